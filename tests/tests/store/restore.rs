//! The point-in-time restore drill (`session-admin table restore`, the real binary) against
//! moto's DynamoDB: a table's sessions come back, item for item, in a new table the stack can
//! read; a source that does not exist is named and leaves no table behind. The drill calls
//! DynamoDB as the `recovery` component, so the permission check holds its calls to the
//! template's `TableRecoveryRole`. moto restores the latest state whatever the moment asked.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, PointInTimeRecoverySpecification, PointInTimeRecoveryStatus,
};
use session_core::clock::ManualClock;
use session_core::config::StoreSettings;
use session_core::store::{DynamoStore, SessionStore as _, create_table};
use session_tests::moto::Moto;

use crate::helpers::Harness;

/// A table with point-in-time recovery on, on the shared moto server, and the tests' own client
/// (no component: the drill's calls are the only `recovery` ones).
struct Source {
    client: Client,
    table: String,
}

impl Source {
    async fn new() -> Self {
        let client =
            DynamoStore::local_client(Moto::shared().endpoint(), &StoreSettings::default(), None);
        let table = format!("restore-{}", ulid::Ulid::new());
        create_table(&client, &table).await.unwrap();
        client
            .update_continuous_backups()
            .table_name(&table)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        Self { client, table }
    }

    fn store_on(&self, table: &str, clock: &ManualClock) -> Arc<DynamoStore> {
        Arc::new(DynamoStore::new(
            self.client.clone(),
            table,
            Arc::new(clock.clone()),
        ))
    }

    /// Every item of `table`, keyed by `PK`/`SK`.
    async fn items(
        &self,
        table: &str,
    ) -> HashMap<(String, String), HashMap<String, AttributeValue>> {
        crate::helpers::table_items(&self.client, table).await
    }

    /// `table`'s time-to-live attribute, whether point-in-time recovery is on and whether it is
    /// protected from deletion: what a restore does not carry over.
    async fn settings(&self, table: &str) -> (Option<String>, bool, bool) {
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .unwrap()
            .time_to_live_description
            .and_then(|d| d.attribute_name);
        let recovery = self
            .client
            .describe_continuous_backups()
            .table_name(table)
            .send()
            .await
            .unwrap()
            .continuous_backups_description
            .and_then(|d| d.point_in_time_recovery_description)
            .and_then(|p| p.point_in_time_recovery_status)
            == Some(PointInTimeRecoveryStatus::Enabled);
        let protected = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap()
            .table
            .and_then(|t| t.deletion_protection_enabled)
            == Some(true);
        (ttl, recovery, protected)
    }

    async fn exists(&self, table: &str) -> bool {
        let tables = self.client.list_tables().into_paginator().items().send();
        tables
            .collect::<Result<Vec<_>, _>>()
            .await
            .unwrap()
            .iter()
            .any(|t| t == table)
    }
}

/// Runs `session-admin table restore <args>` on moto's server.
fn restore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_session-admin-process"))
        .args([
            "--dynamodb-endpoint",
            Moto::shared().endpoint(),
            "table",
            "restore",
        ])
        .args(args)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_copies_every_item_into_a_new_table_the_stack_reads_and_says_how_to_repoint() {
    // Arrange: sessions in a table with point-in-time recovery.
    let source = Source::new().await;
    let clock = ManualClock::at_system_time();
    let harness = Harness {
        store: source.store_on(&source.table, &clock),
        clock: clock.clone(),
        in_region: None,
    };
    let mut sessions = Vec::new();
    for owner in ["alice", "bob", "carol"] {
        let session = harness.session(owner);
        harness.store.create_session(&session, 10).await.unwrap();
        sessions.push(session);
    }
    // Production's table is protected from deletion; the restored one must be too.
    source
        .client
        .update_table()
        .table_name(&source.table)
        .deletion_protection_enabled(true)
        .send()
        .await
        .unwrap();
    let target = format!("{}-restored", source.table);

    // Act
    let output = restore(&["--source", &source.table, "--target", &target]);

    // Assert: the same items, readable through the store, and the deploy that repoints.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "session-admin failed: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let (before, after) = (
        source.items(&source.table).await,
        source.items(&target).await,
    );
    assert!(!before.is_empty());
    assert_eq!(after, before);
    let restored = source.store_on(&target, &clock);
    for session in &sessions {
        let read = restored.get_session(&session.id).await.unwrap();
        assert_eq!(read.as_ref().map(|s| &s.id), Some(&session.id));
    }
    let settings = source.settings(&target).await;
    assert_eq!(settings, (Some("ttl".to_owned()), true, true));
    let items = before.len();
    assert!(
        stdout.contains(&format!(
            "table {target}: restored from {} (latest restorable), ACTIVE, {items} items",
            source.table
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "repoint: deploy the stack with TableMode=replica ReplicaTableName={target}"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("note: the counts differ"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_a_table_that_does_not_exist_names_it_fails_and_creates_nothing() {
    let source = Source::new().await;
    let missing = format!("missing-{}", ulid::Ulid::new());
    let target = format!("{missing}-restored");

    let output = restore(&["--source", &missing, "--target", &target]);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("source table \"{missing}\" does not exist")),
        "{stderr}"
    );
    assert!(!source.exists(&target).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_at_a_malformed_moment_names_it_fails_and_creates_nothing() {
    let source = Source::new().await;
    let target = format!("{}-restored", source.table);

    let output = restore(&[
        "--source",
        &source.table,
        "--target",
        &target,
        "--at",
        "yesterday",
    ]);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--at \"yesterday\" is not an RFC 3339 date-time"),
        "{stderr}"
    );
    assert!(!source.exists(&target).await);
}
