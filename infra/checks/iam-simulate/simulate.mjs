// Evaluates IAM requests with @cloud-copilot/iam-simulate, for infra/checks/permissions.py.
//
// stdin: [{principal, identityPolicies: [{name, policy}], request: {action, resource, context,
// resourcePolicy}}]; stdout: [{decision, detail, allowedBy: [Sid]}], one per request, in order.
// `allowedBy` names the identity statements that allowed it (the unused-grant report).
import { runSimulation } from '@cloud-copilot/iam-simulate'

const input = JSON.parse(await new Promise((resolve) => {
  let text = ''
  process.stdin.on('data', (chunk) => { text += chunk })
  process.stdin.on('end', () => resolve(text))
}))

const account = (arn) => arn.split(':')[4] || '123456789012'

const results = []
for (const item of input) {
  const { principal, identityPolicies, request } = item
  const simulation = {
    identityPolicies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.resource === '*' ? account(principal) : account(request.resource) },
      contextVariables: request.context,
    },
  }
  if (request.resourcePolicy) simulation.resourcePolicy = request.resourcePolicy
  const outcome = await runSimulation(simulation, {})
  if (outcome.errors) {
    results.push({ decision: 'Error', detail: JSON.stringify(outcome.errors), allowedBy: [] })
    continue
  }
  // A request on "*" (actions with no resource type) answers one result per resource type.
  const analyses = (outcome.result ? [outcome.result] : outcome.results ?? []).map((r) => r.analysis)
  const allowedBy = analyses.flatMap((a) => a?.identityAnalysis?.allowStatements ?? [])
    .map((s) => s.explain?.identifier)
  results.push({ decision: outcome.overallResult, allowedBy })
}
process.stdout.write(JSON.stringify(results))
