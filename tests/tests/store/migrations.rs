//! Data migrations (`session-admin migrate`), on DynamoDB only (the in-memory store has no
//! stored shapes to migrate): items written in the old shapes are brought up, once, resumably,
//! by one runner at a time, while the application reads every shape. The runner calls DynamoDB
//! as the `admin` component, so the permission check holds its calls to its role.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use session_core::clock::ManualClock;
use session_core::config::StoreSettings;
use session_core::domain::{Connection, Session, SessionId};
use session_core::store::migrate::{self, MigrateOptions, RunOutcome};
use session_core::store::{
    ConnectionStore as _, DynamoStore, LeaseStore as _, SessionStore as _, StoreError, create_table,
};
use session_tests::moto::Moto;

use crate::helpers::Harness;

const MINUTE: Duration = Duration::from_secs(60);

/// The schema version this code writes (and migrations bring items to).
const TARGET: u32 = 3;

/// A DynamoDB store on a fresh table, the runner's store on it (as the `admin` component), and
/// the raw client to write old shapes with.
pub(crate) struct Migrating {
    pub(crate) harness: Harness,
    pub(crate) store: Arc<DynamoStore>,
    pub(crate) admin: DynamoStore,
    pub(crate) client: Client,
    pub(crate) table: String,
}

impl Migrating {
    pub(crate) async fn new() -> Self {
        let moto = Moto::shared();
        let settings = StoreSettings::default();
        let client = DynamoStore::local_client(moto.endpoint(), &settings, None);
        let table = format!("migrate-{}", ulid::Ulid::new());
        create_table(&client, &table).await.unwrap();
        let clock = ManualClock::at_system_time();
        let store = Arc::new(DynamoStore::new(
            client.clone(),
            &table,
            Arc::new(clock.clone()),
        ));
        let admin = DynamoStore::new(
            migrate::admin_client(moto.endpoint(), &settings),
            &table,
            Arc::new(clock.clone()),
        );
        let harness = Harness {
            store: store.clone(),
            clock,
            in_region: None,
        };
        Self {
            harness,
            store,
            admin,
            client,
            table,
        }
    }

    /// A session with `count` connections written as before the `WSCONN#` entry and the schema
    /// version existed: the current item minus those attributes.
    pub(crate) async fn session_with_old_connections(&self, owner: &str, count: usize) -> Session {
        let h = &self.harness;
        let session = h.session(owner);
        h.store.create_session(&session, 10).await.unwrap();
        for i in 0..count {
            let connection = h.connection(&session, &format!("old{i:02}connAAAAAA="), MINUTE);
            h.store.put_connection(&connection, 64).await.unwrap();
            self.update_raw(
                &connection_key(&connection),
                "REMOVE GSI1PK, GSI1SK, schema_version, write_id",
                &[],
            )
            .await;
        }
        session
    }

    /// `count` version 1 connection items of as many sessions, written raw in batches: only the
    /// attributes the migrations read.
    async fn old_connection_items(&self, count: usize) {
        let items: Vec<WriteRequest> = (0..count)
            .map(|i| {
                let session = SessionId::generate();
                let item = HashMap::from([
                    ("PK".to_owned(), s(&format!("SESSION#{session}"))),
                    ("SK".to_owned(), s(&format!("CONN#bulk{i:04}AAAAAA="))),
                    ("session_id".to_owned(), s(session.as_str())),
                    ("id".to_owned(), s(&format!("bulk{i:04}AAAAAA="))),
                ]);
                let put = PutRequest::builder().set_item(Some(item)).build().unwrap();
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        for batch in items.chunks(25) {
            self.client
                .batch_write_item()
                .request_items(&self.table, batch.to_vec())
                .send()
                .await
                .unwrap();
        }
    }

    pub(crate) async fn update_raw(
        &self,
        key: &[(&str, String)],
        expression: &str,
        values: &[(&str, AttributeValue)],
    ) {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .update_expression(expression);
        for (name, value) in key {
            update = update.key(*name, s(value));
        }
        for (name, value) in values {
            update = update.expression_attribute_values(*name, value.clone());
        }
        update.send().await.unwrap();
    }

    async fn raw(&self, key: &[(&str, String)]) -> HashMap<String, AttributeValue> {
        let mut get = self
            .client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true);
        for (name, value) in key {
            get = get.key(*name, s(value));
        }
        get.send().await.unwrap().item.unwrap()
    }

    async fn up(&self, options: &MigrateOptions) -> Result<RunOutcome, StoreError> {
        self.admin.migrate_up(options, &mut |_| {}).await
    }

    pub(crate) async fn pending_items(&self) -> u64 {
        let pending = self.admin.migrations_pending().await.unwrap();
        pending.iter().map(|p| p.items).sum()
    }

    async fn pending_in(&self, version: u32) -> u64 {
        let pending = self.admin.migrations_pending().await.unwrap();
        pending.iter().find(|p| p.version == version).unwrap().items
    }

    /// Runs `session-admin migrate <args>` (the real binary) on this table.
    fn admin_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_session-admin-process"));
        command
            .args([
                "--dynamodb-endpoint",
                Moto::shared().endpoint(),
                "--table",
                &self.table,
                "migrate",
            ])
            .args(args)
            // Not the tests' environment: the binary reads `SESSION_*` settings.
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .stdin(Stdio::null());
        command
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub(crate) fn connection_key(c: &Connection) -> [(&'static str, String); 2] {
    [
        ("PK", format!("SESSION#{}", c.session_id)),
        ("SK", format!("CONN#{}", c.id)),
    ]
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
    assert_eq!(m.pending_in(2).await, 3);

    let first = m.up(&MigrateOptions::new("runner-a")).await.unwrap();
    let second = m.up(&MigrateOptions::new("runner-a")).await.unwrap();

    // Each item changed once by migration 2 (its entry) and once by migration 3 (its version).
    assert!(
        matches!(
            first,
            RunOutcome::Complete {
                version: TARGET,
                changed: 6,
                ..
            }
        ),
        "{first:?}"
    );
    assert!(
        matches!(
            second,
            RunOutcome::Complete {
                version: TARGET,
                changed: 0,
                ..
            }
        ),
        "{second:?}"
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
    let status = m.admin.migration_status().await.unwrap();
    assert_eq!(
        (status.applied, status.running, status.holder),
        (TARGET, None, None)
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
        ..
    } = stopped
    else {
        panic!("expected a pause in migration 2, got {stopped:?}");
    };
    let status = m.admin.migration_status().await.unwrap();
    assert_eq!((status.applied, status.running), (1, Some((2, true))));
    // Five items for migration 2, the same five for migration 3.
    assert_eq!(m.pending_items().await, 10 - before);

    // Another runner picks it up where the first stopped.
    let resumed = m.up(&MigrateOptions::new("runner-b")).await.unwrap();

    let RunOutcome::Complete {
        version: TARGET,
        changed: after,
        ..
    } = resumed
    else {
        panic!("expected completion, got {resumed:?}");
    };
    assert_eq!(
        before + after,
        10,
        "each old item changed once per migration"
    );
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
        2,
        "the refused runner wrote nothing"
    );
    let status = m.admin.migration_status().await.unwrap();
    assert_eq!(status.holder.as_deref(), Some("runner-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_started_at_the_same_moment_one_runs_and_the_other_is_refused_naming_it() {
    let m = Migrating::new().await;
    m.old_connection_items(40).await;
    let (a, b) = (
        MigrateOptions::new("runner-a"),
        MigrateOptions::new("runner-b"),
    );

    let (ran_a, ran_b) = tokio::join!(m.up(&a), m.up(&b));

    let (outcome, refusal, winner, loser) = match (ran_a, ran_b) {
        (Ok(outcome), Err(refusal)) => (outcome, refusal, "runner-a", "runner-b"),
        (Err(refusal), Ok(outcome)) => (outcome, refusal, "runner-b", "runner-a"),
        other => panic!("expected exactly one runner to run, got {other:?}"),
    };
    match refusal {
        StoreError::LeaseHeld { owner, .. } => assert_eq!(owner, winner, "{loser} names it"),
        other => panic!("expected {loser} refused for the lease, got {other:?}"),
    }
    // 40 items, each changed once by each migration: the data was migrated once.
    assert!(
        matches!(
            outcome,
            RunOutcome::Complete {
                version: TARGET,
                changed: 80,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(m.pending_items().await, 0);
}

/// `stdout` of a finished `session-admin` run, which must have succeeded.
fn succeeded(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "session-admin failed: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The `<n> items scanned` of `up`'s result line.
fn scanned_in(result: &str) -> u64 {
    let before = result
        .split(" items scanned")
        .next()
        .unwrap_or_else(|| panic!("no scanned count in {result:?}"));
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no scanned count in {result:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_way_blocks_the_next_until_its_lease_lapses_then_the_next_resumes() {
    const ITEMS: usize = 300;
    let m = Migrating::new().await;
    m.old_connection_items(ITEMS).await;
    let mut runner = m
        .admin_command(&["up", "--page-size", "5", "--lease-secs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Killed (SIGKILL: no clean-up) once its checkpoint shows progress.
    let started = Instant::now();
    loop {
        let status = m.admin.migration_status().await.unwrap();
        if matches!(status.running, Some((_, true))) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no checkpoint in 30 s: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    runner.kill().unwrap();
    runner.wait().unwrap();
    let killed = m.admin.migration_status().await.unwrap();
    let holder = killed.holder.clone().expect("the killed runner's lease");
    assert!(holder.starts_with("session-admin/"), "{holder}");
    let (left_2, left_3) = (m.pending_in(2).await, m.pending_in(3).await);
    assert!(
        killed.running.is_some_and(|(v, _)| v == 3) || left_2 < ITEMS as u64,
        "it made progress: {killed:?}, {left_2} left"
    );

    // Its lease blocks the next runner, which names it.
    let blocked = m.admin_command(&["up"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    assert!(!blocked.status.success());
    assert!(stderr.contains(&format!("held by {holder}")), "{stderr}");

    // Once it lapses, the next resumes from the checkpoint.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let resumed = succeeded(
        &m.admin_command(&["up", "--lease-secs", "2"])
            .output()
            .unwrap(),
    );

    assert!(
        resumed.contains(&format!(
            "at version {TARGET} ({} items changed,",
            left_2 + left_3
        )),
        "each item changed once: {resumed}"
    );
    // A run from the start scans the whole table once per migration.
    let table_items = ITEMS as u64 + 2; // and the progress and lease items
    assert!(
        scanned_in(&resumed) < 2 * table_items,
        "resumed from the checkpoint, not the start: {resumed}"
    );
    let verified = succeeded(&m.admin_command(&["verify"]).output().unwrap());
    assert!(
        verified
            .lines()
            .all(|line| line.ends_with(": 0 items pending")),
        "{verified}"
    );
    let status = succeeded(&m.admin_command(&["status"]).output().unwrap());
    assert_eq!(
        status.trim(),
        format!("table {}: applied {TARGET}, target {TARGET}", m.table)
    );
}

/// A session with one connection whose entry is in the 8-shard layout of schema version 2, and
/// whether migration 3 moves it (its shard under 16 is 8 or more).
async fn session_in_the_eight_shard_layout(m: &Migrating, owner: &str) -> (Session, bool) {
    let h = &m.harness;
    let session = h.session(owner);
    h.store.create_session(&session, 10).await.unwrap();
    let connection = h.connection(&session, "eightshardAAAAA=", MINUTE);
    h.store.put_connection(&connection, 64).await.unwrap();
    let key = connection_key(&connection);
    let item = m.raw(&key).await;
    let pk = item["GSI1PK"].as_s().unwrap();
    let shard: u32 = pk.strip_prefix("WSCONN#").unwrap().parse().unwrap();
    // h mod 8 = (h mod 16) mod 8: the shard it had under 8.
    m.update_raw(
        &key,
        "SET GSI1PK = :pk, schema_version = :two",
        &[
            (":pk", s(&format!("WSCONN#{}", shard % 8))),
            (":two", AttributeValue::N("2".to_owned())),
        ],
    )
    .await;
    (session, shard >= 8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_in_the_eight_shard_layout_are_found_before_during_and_after_migration_3() {
    let m = Migrating::new().await;
    // Sessions until some move and some stay (half of all do each).
    let (mut sessions, mut moving) = (Vec::new(), 0);
    while sessions.len() < 4 || moving < 2 || sessions.len() - moving < 2 {
        let (session, moves) =
            session_in_the_eight_shard_layout(&m, &format!("user{}", sessions.len())).await;
        moving += usize::from(moves);
        sessions.push(session.id);
    }
    let found = || async {
        let listed = m.store.sessions_with_connections().await.unwrap();
        sessions.iter().filter(|s| listed.contains(s)).count()
    };
    let all = sessions.len();
    assert_eq!(found().await, all, "before");
    assert_eq!(m.pending_in(3).await, all as u64);

    // Half migrated: a page at a time until migration 3 has moved some but not all.
    let options = MigrateOptions {
        page_size: 1,
        max_pages: Some(1),
        ..MigrateOptions::new("runner-a")
    };
    loop {
        m.up(&options).await.unwrap();
        let status = m.admin.migration_status().await.unwrap();
        let left = m.pending_in(3).await;
        if status.running.is_some_and(|(v, _)| v == 3) && left > 0 && left < all as u64 {
            break;
        }
        assert!(status.applied < TARGET, "it ended before it was half-way");
    }
    assert_eq!(found().await, all, "during");

    m.up(&MigrateOptions::new("runner-a")).await.unwrap();

    assert_eq!(found().await, all, "after");
    assert_eq!(m.pending_items().await, 0);
    for id in &sessions {
        assert_eq!(m.store.list_connections(id).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_reads_items_of_every_version_up_to_the_next_releases_and_no_later() {
    let m = Migrating::new().await;
    let h = &m.harness;
    let mut sessions = Vec::new();
    for version in [
        None,
        Some(2),
        Some(TARGET),
        Some(TARGET + 1),
        Some(TARGET + 2),
    ] {
        let session = h.session("dave");
        h.store.create_session(&session, 10).await.unwrap();
        let key = [
            ("PK", format!("SESSION#{}", session.id)),
            ("SK", "SESSION".to_owned()),
        ];
        match version {
            // Version 1: written before the attribute (and write ids) existed.
            None => {
                m.update_raw(&key, "REMOVE schema_version, write_id", &[])
                    .await;
            }
            Some(v) => {
                let n = AttributeValue::N(v.to_string());
                m.update_raw(&key, "SET schema_version = :v", &[(":v", n)])
                    .await;
            }
        }
        sessions.push((version, session));
    }

    for (version, session) in &sessions {
        let read = m.store.get_session(&session.id).await;
        if *version == Some(TARGET + 2) {
            let error = read.expect_err("two versions ahead is not read");
            assert!(
                format!("{error}").contains("schema_version"),
                "names the attribute: {error}"
            );
        } else {
            assert_eq!(read.unwrap().as_ref(), Some(session), "version {version:?}");
        }
    }
}
