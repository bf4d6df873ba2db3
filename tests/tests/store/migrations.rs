//! Data migrations (`session-admin migrate`), on DynamoDB only (the in-memory store has no
//! stored shapes to migrate): items written in the old shape are brought up, once, resumably,
//! by one runner at a time, while the application reads both shapes.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use session_core::clock::ManualClock;
use session_core::config::StoreSettings;
use session_core::domain::{Connection, Session};
use session_core::store::migrate::{MigrateOptions, RunOutcome};
use session_core::store::{
    ConnectionStore as _, DynamoStore, LeaseStore as _, StoreError, create_table,
};
use session_tests::moto::Moto;

use crate::helpers::Harness;

const MINUTE: Duration = Duration::from_secs(60);

/// A DynamoDB store on a fresh table, with the raw client to write old shapes with.
struct Migrating {
    harness: Harness,
    store: Arc<DynamoStore>,
    client: Client,
    table: String,
}

impl Migrating {
    async fn new() -> Self {
        let moto = Moto::shared();
        let client = DynamoStore::local_client(moto.endpoint(), &StoreSettings::default(), None);
        let table = format!("migrate-{}", ulid::Ulid::new());
        create_table(&client, &table).await.unwrap();
        let clock = ManualClock::at_system_time();
        let store = Arc::new(DynamoStore::new(
            client.clone(),
            &table,
            Arc::new(clock.clone()),
        ));
        let harness = Harness {
            store: store.clone(),
            clock,
        };
        Self {
            harness,
            store,
            client,
            table,
        }
    }

    /// A session with `count` connections written as before the `WSCONN#` entry and the schema
    /// version existed: the current item minus those attributes.
    async fn session_with_old_connections(&self, owner: &str, count: usize) -> Session {
        let h = &self.harness;
        let session = h.session(owner);
        h.store.create_session(&session, 10).await.unwrap();
        for i in 0..count {
            let connection = h.connection(&session, &format!("old{i:02}connAAAAAA="), MINUTE);
            h.store.put_connection(&connection, 64).await.unwrap();
            self.to_old_shape(&connection).await;
        }
        session
    }

    async fn to_old_shape(&self, c: &Connection) {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(format!("SESSION#{}", c.session_id)))
            .key("SK", AttributeValue::S(format!("CONN#{}", c.id)))
            .update_expression("REMOVE GSI1PK, GSI1SK, schema_version, write_id")
            .send()
            .await
            .unwrap();
    }

    async fn up(&self, options: &MigrateOptions) -> Result<RunOutcome, StoreError> {
        self.store.migrate_up(options, &mut |_| {}).await
    }

    async fn pending_items(&self) -> u64 {
        let pending = self.store.migrations_pending().await.unwrap();
        pending.iter().map(|p| p.items).sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_up_gives_old_connection_items_their_index_entry_and_a_second_up_does_nothing() {
    let m = Migrating::new().await;
    let session = m.session_with_old_connections("alice", 3).await;
    let id = m
        .harness
        .connection(&session, "old00connAAAAAA=", MINUTE)
        .id;

    // Meanwhile the application reads the old shape; streamers cannot see it yet.
    assert!(
        m.store
            .get_connection(&session.id, &id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        m.store.list_connections(&session.id).await.unwrap().len(),
        3
    );
    assert!(
        !m.store
            .sessions_with_connections()
            .await
            .unwrap()
            .contains(&session.id)
    );
    assert_eq!(m.pending_items().await, 3);

    let first = m.up(&MigrateOptions::new("runner-a")).await.unwrap();
    let second = m.up(&MigrateOptions::new("runner-a")).await.unwrap();

    assert_eq!(
        first,
        RunOutcome::Complete {
            version: 2,
            changed: 3
        }
    );
    assert_eq!(
        second,
        RunOutcome::Complete {
            version: 2,
            changed: 0
        }
    );
    assert!(
        m.store
            .sessions_with_connections()
            .await
            .unwrap()
            .contains(&session.id)
    );
    assert_eq!(
        m.store.list_connections(&session.id).await.unwrap().len(),
        3
    );
    assert_eq!(m.pending_items().await, 0, "verify finds nothing left");
    let status = m.store.migration_status().await.unwrap();
    assert_eq!(
        (status.applied, status.running, status.holder),
        (2, None, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_stopped_after_a_page_resumes_from_its_checkpoint() {
    let m = Migrating::new().await;
    let session = m.session_with_old_connections("bob", 5).await;
    let options = MigrateOptions {
        page_size: 2,
        ..MigrateOptions::new("runner-a")
    };

    let stopped = m
        .up(&MigrateOptions {
            max_pages: Some(1),
            ..options.clone()
        })
        .await
        .unwrap();
    let RunOutcome::Paused {
        version: 2,
        changed: before,
    } = stopped
    else {
        panic!("expected a pause in migration 2, got {stopped:?}");
    };
    let status = m.store.migration_status().await.unwrap();
    assert_eq!((status.applied, status.running), (1, Some((2, true))));
    assert_eq!(m.pending_items().await, 5 - before);

    // Another runner picks it up where the first stopped.
    let resumed = m.up(&MigrateOptions::new("runner-b")).await.unwrap();

    let RunOutcome::Complete {
        version: 2,
        changed: after,
    } = resumed
    else {
        panic!("expected completion, got {resumed:?}");
    };
    assert_eq!(before + after, 5, "each old item changed exactly once");
    assert_eq!(m.pending_items().await, 0);
    assert!(
        m.store
            .sessions_with_connections()
            .await
            .unwrap()
            .contains(&session.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_is_refused_while_the_first_holds_the_lease_naming_it() {
    let m = Migrating::new().await;
    m.session_with_old_connections("carol", 1).await;
    m.store
        .acquire_lease("migrations", "runner-a", MINUTE)
        .await
        .unwrap();

    let refused = m.up(&MigrateOptions::new("runner-b")).await;

    match refused {
        Err(StoreError::LeaseHeld { owner, .. }) => assert_eq!(owner, "runner-a"),
        other => panic!("expected the lease held by runner-a, got {other:?}"),
    }
    assert_eq!(
        m.pending_items().await,
        1,
        "the refused runner wrote nothing"
    );
    let status = m.store.migration_status().await.unwrap();
    assert_eq!(status.holder.as_deref(), Some("runner-a"));
}
