// Validates an AsyncAPI document with the AsyncAPI Initiative's parser (its JSON Schema of the
// specification and its rules): prints every diagnostic, exits 1 on any error.
//
//   node validate.mjs docs/asyncapi.json
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const path = process.argv[2];
const diagnostics = await new Parser().validate(readFileSync(path, "utf8"), { source: path });
const names = ["error", "warning", "information", "hint"];
let errors = 0;
for (const d of diagnostics) {
  if (d.severity === DiagnosticSeverity.Error) errors += 1;
  const at = d.path.length ? d.path.join("/") : "(document)";
  console.log(`${names[d.severity] ?? d.severity}: ${d.code}: ${at}: ${d.message}`);
}
console.log(`${path}: ${errors} error(s), ${diagnostics.length - errors} other diagnostic(s)`);
process.exit(errors ? 1 : 0);
