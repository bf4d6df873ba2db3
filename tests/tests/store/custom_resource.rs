//! `session-admin` as the deploy's `Migrations` custom resource: the events CloudFormation sends
//! (`fixtures/cloudformation-migrations-*.json`) through the handler the Lambda runs, against
//! moto, with `ResponseURL` pointing at an HTTP server here that keeps the PUT CloudFormation's
//! S3 would receive.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::put;
use serde_json::Value;
use session_core::config::StoreSettings;
use session_core::store::DynamoStore;
use session_functions::admin::{admin_store, custom_resource};
use session_tests::moto::Moto;
use tokio::sync::mpsc;

use crate::migrations::Migrating;

/// A PUT the server received: its content type and its JSON body.
type Received = (Option<String>, Value);

/// An HTTP server on a free loopback port standing in for CloudFormation's response bucket.
struct ResponseBucket {
    url: String,
    received: mpsc::UnboundedReceiver<Received>,
}

impl ResponseBucket {
    async fn start() -> Self {
        let (tx, received) = mpsc::unbounded_channel();
        let app = Router::new()
            .route(
                "/cr-response",
                put(
                    |State(tx): State<mpsc::UnboundedSender<Received>>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let content_type = headers
                            .get("content-type")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let _ = tx.send((content_type, serde_json::from_slice(&body).unwrap()));
                    },
                ),
            )
            .with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cr-response", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received }
    }

    /// The fixture `file` as CloudFormation would send it for `table`, answering here.
    fn event(&self, file: &str, table: &str) -> custom_resource::Request {
        let path = session_tests::moto::repo_root()
            .join("tests/tests/store/fixtures")
            .join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("RESPONSE_URL", &self.url)
            .replace("PHYSICAL_TABLE", table);
        serde_json::from_str(&text).unwrap()
    }

    /// [`Self::event`] with `properties` added to its `ResourceProperties`.
    fn event_with(&self, file: &str, table: &str, properties: &Value) -> custom_resource::Request {
        let mut event = serde_json::to_value(self.event(file, table)).unwrap();
        for (name, value) in properties.as_object().unwrap() {
            event["ResourceProperties"][name] = value.clone();
        }
        serde_json::from_value(event).unwrap()
    }

    /// The one answer received.
    async fn answer(&mut self) -> Received {
        let answer = self.received.recv().await.expect("an answer");
        assert!(self.received.try_recv().is_err(), "answered once");
        answer
    }
}

/// An invocation without a deadline.
fn run() -> custom_resource::Run {
    custom_resource::Run {
        deadline: None,
        invocation: "4f1c2b9e-7d3a-4e6f-9a8b-1c2d3e4f5a6b".to_owned(),
    }
}

async fn store_on(table: &str) -> DynamoStore {
    let settings = StoreSettings {
        table_name: table.to_owned(),
        ..StoreSettings::default()
    };
    admin_store(&settings, Some(Moto::shared().endpoint())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_migrates_the_table_and_answers_success_with_a_stable_physical_id() {
    let m = Migrating::new().await;
    m.session_with_old_connections("erin", 2).await;
    let mut bucket = ResponseBucket::start().await;
    let store = store_on(&m.table).await;
    let responder = custom_resource::Responder::new().unwrap();

    let create = bucket.event("cloudformation-migrations-create.json", &m.table);
    custom_resource::handle(&store, &responder, create, &run())
        .await
        .unwrap();
    let (content_type, created) = bucket.answer().await;
    let update = bucket.event("cloudformation-migrations-update.json", &m.table);
    custom_resource::handle(&store, &responder, update, &run())
        .await
        .unwrap();
    let (_, updated) = bucket.answer().await;

    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert_eq!(
        content_type.as_deref(),
        Some(""),
        "the URL is signed without one"
    );
    let physical = format!("session-migrations/{}", m.table);
    assert_eq!(created["PhysicalResourceId"], physical.as_str());
    assert_eq!(created["RequestId"], "6d2b7c1e-4f5a-4b8e-9c3d-2a1f0e9d8c7b");
    assert_eq!(created["LogicalResourceId"], "Migrations");
    assert!(
        created["StackId"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:cloudformation:")
    );
    assert_eq!(m.pending_items().await, 0, "migrated");
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    assert_eq!(updated["PhysicalResourceId"], physical.as_str(), "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_regions_stack_answers_success_and_leaves_the_migrating_to_the_primary() {
    let m = Migrating::new().await;
    m.session_with_old_connections("erin", 2).await;
    let pending = m.pending_items().await;
    let mut bucket = ResponseBucket::start().await;
    let store = store_on(&m.table).await;
    let responder = custom_resource::Responder::new().unwrap();

    for file in [
        "cloudformation-migrations-create.json",
        "cloudformation-migrations-update.json",
    ] {
        let event = bucket.event_with(file, &m.table, &serde_json::json!({"Migrate": "false"}));
        custom_resource::handle(&store, &responder, event, &run())
            .await
            .unwrap();
        let (_, answer) = bucket.answer().await;

        assert_eq!(answer["Status"], "SUCCESS", "{file}: {answer}");
        assert!(
            answer["Reason"]
                .as_str()
                .unwrap()
                .contains("primary region"),
            "{file}: {answer}"
        );
    }
    assert!(pending > 0);
    assert_eq!(m.pending_items().await, pending, "nothing migrated here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_answers_failed_with_a_reason_naming_the_problem() {
    let mut bucket = ResponseBucket::start().await;
    let store = store_on("no-such-table").await;
    let responder = custom_resource::Responder::new().unwrap();

    let create = bucket.event("cloudformation-migrations-create.json", "no-such-table");
    custom_resource::handle(&store, &responder, create, &run())
        .await
        .unwrap();
    let (_, answer) = bucket.answer().await;

    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(reason.contains("no-such-table"), "{reason}");
    assert!(reason.contains("ResourceNotFound"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_answers_success_without_touching_the_table() {
    let m = Migrating::new().await;
    m.session_with_old_connections("frank", 2).await;
    let mut bucket = ResponseBucket::start().await;
    let store = store_on(&m.table).await;
    let responder = custom_resource::Responder::new().unwrap();

    let delete = bucket.event("cloudformation-migrations-delete.json", &m.table);
    custom_resource::handle(&store, &responder, delete, &run())
        .await
        .unwrap();
    let (_, answer) = bucket.answer().await;

    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(
        answer["PhysicalResourceId"],
        format!("session-migrations/{}", m.table).as_str()
    );
    assert_eq!(m.pending_items().await, 4, "nothing migrated");
    let status = m.admin.migration_status().await.unwrap();
    assert_eq!((status.applied, status.holder), (1, None), "no lease taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_to_an_earlier_function_version_answers_success_without_migrating() {
    let m = Migrating::new().await;
    m.session_with_old_connections("grace", 1).await;
    let mut bucket = ResponseBucket::start().await;
    let store = store_on(&m.table).await;
    let responder = custom_resource::Responder::new().unwrap();
    // CloudFormation rolling back sends the previous properties as the new ones.
    let mut rollback = bucket.event("cloudformation-migrations-update.json", &m.table);
    if let custom_resource::Request::Update(update) = &mut rollback {
        std::mem::swap(
            &mut update.resource_properties,
            &mut update.old_resource_properties,
        );
    }

    custom_resource::handle(&store, &responder, rollback, &run())
        .await
        .unwrap();
    let (_, answer) = bucket.answer().await;

    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(m.pending_items().await, 2, "nothing migrated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_reaches_its_deadline_answers_failed_saying_how_to_finish_it() {
    let m = Migrating::new().await;
    m.session_with_old_connections("heidi", 2).await;
    let mut bucket = ResponseBucket::start().await;
    let store = store_on(&m.table).await;
    let responder = custom_resource::Responder::new().unwrap();
    let create = bucket.event("cloudformation-migrations-create.json", &m.table);
    let out_of_time = custom_resource::Run {
        deadline: Some(std::time::Instant::now()),
        ..run()
    };

    custom_resource::handle(&store, &responder, create, &out_of_time)
        .await
        .unwrap();
    let (_, answer) = bucket.answer().await;

    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.contains("before the Lambda's time limit"),
        "{reason}"
    );
    assert!(reason.contains("session-admin migrate up"), "{reason}");
    // On the handler's store: its clock is the system's, which the release lapses the lease at.
    let status = store.migration_status().await.unwrap();
    assert_eq!((status.applied, status.holder), (1, None), "lease released");
}
