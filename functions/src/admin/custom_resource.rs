//! In Lambda, `session-admin` is the stack's `Migrations` custom resource: CloudFormation sends
//! it an event on every deploy before the new functions take traffic. `Create` and `Update` run
//! `migrate up` on the table of the environment (`SESSION_STORE__TABLE_NAME`), except an
//! `Update` that rolls back to an earlier function version; `Delete` does nothing (the data
//! stays with the table). The answer is a PUT of the response document to the
//! event's `ResponseURL` (a pre-signed S3 URL): `SUCCESS`, or `FAILED` with the reason, which
//! fails the deploy and rolls it back. A migration that would outlive the Lambda stops at a
//! checkpoint before its deadline and answers `FAILED` saying so: the next deploy, or
//! `session-admin migrate up` by hand, resumes it there.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use aws_lambda_events::cloudformation::CloudFormationCustomResourceRequest as Request;
use aws_lambda_events::cloudformation::{
    CloudFormationCustomResourceResponse as Response,
    CloudFormationCustomResourceResponseStatus as Status,
};
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lambda_runtime::{LambdaEvent, service_fn};
use rustls::{ClientConfig, RootCertStore};
use session_core::component::Component;
use session_core::service::error_chain;
use session_core::store::DynamoStore;
use session_core::store::migrate::{MigrateOptions, RunOutcome};
use tracing::{info, warn};

/// Time kept back from the Lambda's deadline: the last page, the lease's release and the PUT.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(60);

/// How long CloudFormation's S3 may take to take the answer.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);

/// CloudFormation caps the whole response document at 4 KiB.
const MAX_REASON: usize = 1_000;

/// Why CloudFormation could not be answered (the migration's own failure is an answer).
#[derive(Debug, thiserror::Error)]
pub enum CustomResourceError {
    /// The `ResponseURL` is not a URL.
    #[error("ResponseURL {0:?} is not an http(s) URL")]
    ResponseUrl(String),
    /// The PUT failed or timed out.
    #[error("PUT to ResponseURL failed: {0}")]
    Put(String),
    /// The PUT was refused.
    #[error("PUT to ResponseURL answered {0}")]
    Refused(http::StatusCode),
    /// A request type other than `Create`, `Update` and `Delete`.
    #[error("unknown custom-resource request type")]
    UnknownRequest,
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Answers CloudFormation: PUTs response documents to pre-signed URLs, over TLS (the system's
/// roots, aws-lc-rs) or plain HTTP.
#[derive(Debug, Clone)]
pub struct Responder {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Responder {
    /// A responder trusting the system's roots.
    ///
    /// # Errors
    /// rustls refuses the configuration.
    pub fn new() -> Result<Self, CustomResourceError> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    async fn put(&self, url: &str, response: &Response) -> Result<(), CustomResourceError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| CustomResourceError::ResponseUrl(url.to_owned()))?;
        let body = serde_json::to_vec(response).unwrap_or_default();
        // No content type: the URL is signed without one.
        let request = http::Request::put(uri)
            .header(http::header::CONTENT_TYPE, "")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| CustomResourceError::ResponseUrl(url.to_owned()))?;
        let answer = tokio::time::timeout(PUT_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| CustomResourceError::Put(format!("no answer in {PUT_TIMEOUT:?}")))?
            .map_err(|e| CustomResourceError::Put(error_chain(&e)))?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(CustomResourceError::Refused(answer.status()))
        }
    }
}

/// Serves custom-resource events from the Lambda runtime, on the environment's table.
///
/// # Errors
/// The settings are malformed, or the runtime fails.
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let settings = session_core::config::Settings::load(None)?;
    session_core::telemetry::init(&settings.telemetry, Component::Admin.name())?;
    let store = &super::admin_store(&settings.store, None).await;
    let responder = &Responder::new()?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Request>| async move {
        let run = Run {
            deadline: Some(deadline_of(event.context.deadline)),
            invocation: event.context.request_id,
        };
        let answered = handle(store, responder, event.payload, &run).await;
        session_core::telemetry::flush().await;
        // Unanswered: the error makes Lambda retry the event (asynchronous invocation).
        answered
            .map(|_| ())
            .map_err(|e| lambda_runtime::Diagnostic {
                error_type: "CustomResourceUnanswered".to_owned(),
                error_message: e.to_string(),
            })
    }))
    .await
}

/// When a run must stop: [`DEADLINE_MARGIN`] before the invocation's deadline (milliseconds
/// since the epoch).
fn deadline_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Instant::now() + left.saturating_sub(DEADLINE_MARGIN)
}

/// The invocation a run is part of.
#[derive(Debug, Clone)]
pub struct Run {
    /// Stop at a checkpoint past this instant.
    pub deadline: Option<Instant>,
    /// The Lambda request id: the lease's holder is `custom-resource/<it>`, unique per
    /// invocation (process ids repeat across Lambda sandboxes).
    pub invocation: String,
}

/// Handles one custom-resource event on `store`'s table and answers CloudFormation; returns
/// the answer sent. The binary's path in Lambda, and the tests'.
///
/// # Errors
/// CloudFormation could not be answered (the migration's failure is answered `FAILED`).
pub async fn handle(
    store: &DynamoStore,
    responder: &Responder,
    request: Request,
    run: &Run,
) -> Result<Response, CustomResourceError> {
    let table = store.table().to_owned();
    let (common, physical_id, migrate) = match &request {
        Request::Create(r) => (
            (
                &r.response_url,
                &r.stack_id,
                &r.request_id,
                &r.logical_resource_id,
            ),
            physical_id(&table),
            true,
        ),
        // The id given at creation, kept: a new one would make CloudFormation delete the old.
        Request::Update(r) => (
            (
                &r.response_url,
                &r.stack_id,
                &r.request_id,
                &r.logical_resource_id,
            ),
            r.physical_resource_id.clone(),
            !is_rollback(&r.resource_properties, &r.old_resource_properties),
        ),
        Request::Delete(r) => (
            (
                &r.response_url,
                &r.stack_id,
                &r.request_id,
                &r.logical_resource_id,
            ),
            r.physical_resource_id.clone(),
            false,
        ),
        // The enum is open for request types CloudFormation may add; it sends none other.
        _ => return Err(CustomResourceError::UnknownRequest),
    };
    let (url, stack_id, request_id, logical_id) = common;
    let (status, reason) = match (&request, migrate) {
        (Request::Create(r), true) if is_replica(&r.resource_properties) => replica_answer(),
        (Request::Update(r), true) if is_replica(&r.resource_properties) => replica_answer(),
        (_, true) => migrate_up(store, run).await,
        (Request::Update(_), false) => (
            Status::Success,
            "a rollback to an earlier function version: nothing to migrate (that version reads \
             the migrated items)"
                .to_owned(),
        ),
        _ => (
            Status::Success,
            "nothing to do on delete: the data stays".to_owned(),
        ),
    };
    info!(table, ?status, reason, "answering CloudFormation");
    let mut response = Response::default();
    response.status = status;
    response.reason = Some(truncated(reason));
    response.physical_resource_id = physical_id;
    response.stack_id.clone_from(stack_id);
    response.request_id.clone_from(request_id);
    response.logical_resource_id.clone_from(logical_id);
    responder.put(url, &response).await?;
    Ok(response)
}

/// Whether the stack is another region's replica of a global table (`Migrate: "false"`, set by
/// the template in `TableMode=replica`): the primary region's stack migrates the table, once.
/// Two regions migrating one global table would each take the migrations' lease in their own
/// replica (a conditional write sees only its region), and run every step twice at once.
fn is_replica(properties: &serde_json::Value) -> bool {
    properties
        .get("Migrate")
        .and_then(serde_json::Value::as_str)
        == Some("false")
}

fn replica_answer() -> (Status, String) {
    (
        Status::Success,
        "a replica region's stack: the primary region's stack migrates the global table".to_owned(),
    )
}

/// Whether an `Update` moves back to an earlier function version: CloudFormation rolling back
/// sends the previous properties, whose `FunctionVersion` (a version ARN, `...:function:f:12`)
/// is below the one being left. Migrating then would only risk failing the rollback itself.
fn is_rollback(properties: &serde_json::Value, old_properties: &serde_json::Value) -> bool {
    let version = |p: &serde_json::Value| {
        p.get("FunctionVersion")?
            .as_str()?
            .rsplit(':')
            .next()?
            .parse::<u64>()
            .ok()
    };
    matches!((version(properties), version(old_properties)), (Some(new), Some(old)) if new < old)
}

/// The resource's physical id: one per table, the same on every deploy.
fn physical_id(table: &str) -> String {
    format!("session-migrations/{table}")
}

async fn migrate_up(store: &DynamoStore, run: &Run) -> (Status, String) {
    let table = store.table();
    let options = MigrateOptions {
        deadline: run.deadline,
        ..MigrateOptions::new(format!("custom-resource/{}", run.invocation))
    };
    let outcome = store
        .migrate_up(&options, &mut |page| {
            info!(
                version = page.version,
                scanned = page.total_scanned,
                changed = page.total_changed,
                "migration page"
            );
        })
        .await;
    match outcome {
        Ok(RunOutcome::Complete {
            version, changed, ..
        }) => (
            Status::Success,
            format!("table {table} at schema version {version} ({changed} items changed)"),
        ),
        Ok(RunOutcome::Paused {
            version, changed, ..
        }) => (
            Status::Failed,
            format!(
                "migration {version} of table {table} stopped at its checkpoint before the \
                 Lambda's time limit ({changed} items changed): run `session-admin migrate up` \
                 to finish it, then deploy again"
            ),
        ),
        Err(e) => {
            warn!(table, error = %error_chain(&e), "migration failed");
            (
                Status::Failed,
                format!("migrating table {table} failed: {}", error_chain(&e)),
            )
        }
    }
}

fn truncated(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}
