//! `session-admin region failover` (the real binary) against moto's DynamoDB, with two REST
//! stacks configured as regions `a` (primary) and `b` over one table (a global table with no
//! replication lag): the sessions born in `a` move to `b` at epoch 2 with their simulators
//! failed, `a` refuses their writes naming `b`, `b` takes them; a re-run moves nothing, and a
//! failover to the region itself is refused before anything is written. The command calls
//! DynamoDB as the `recovery` component, so the permission check holds its calls to the
//! template's `TableRecoveryRole`.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::StatusCode;
use session_core::clock::SystemClock;
use session_core::config::StoreSettings;
use session_core::domain::{SessionId, SimulatorId, SimulatorStatus};
use session_core::store::{DynamoStore, REGION_FAILOVER_REASON, SimulatorStore as _};
use session_tests::moto::Moto;
use session_tests::regions::{self, API_B};
use session_tests::test_api::TestApi;

/// The local stack as region `this` of the deployment {a (primary), b}, on `table` of moto.
/// Without the read cache: a region's cached copy from before a failover would answer a write
/// `409` (the epoch fence still refuses it) until it lapses (`cache.ttl_ms`), and this test is
/// about the answer after.
async fn region_stack(this: &str, table: &str) -> TestApi {
    regions::region_stack(this, table, |s| s.cache.enabled = false).await
}

/// Runs `session-admin --table <table> region failover <args>` on moto's server.
fn failover(table: &str, args: &[&str]) -> Output {
    region_command(table, "failover", args)
}

/// Runs `session-admin --table <table> region reconcile <args>` on moto's server.
fn reconcile(table: &str, args: &[&str]) -> Output {
    region_command(table, "reconcile", args)
}

/// Runs `session-admin --table <table> region <verb> <args>` on moto's server.
fn region_command(table: &str, verb: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_session-admin-process"))
        .args([
            "--dynamodb-endpoint",
            Moto::shared().endpoint(),
            "--table",
            table,
            "region",
            verb,
        ])
        .args(args)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout_of(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "session-admin failed: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The tests' own client (no component: the command's calls are the only `recovery` ones).
fn client() -> Client {
    DynamoStore::local_client(Moto::shared().endpoint(), &StoreSettings::default(), None)
}

/// Every item of `table`, keyed by `PK`/`SK`.
async fn items(table: &str) -> HashMap<(String, String), HashMap<String, AttributeValue>> {
    crate::helpers::table_items(&client(), table).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_moves_as_sessions_to_b_fails_their_simulators_and_a_sends_their_writes_to_b() {
    // Arrange: two sessions born in a, one with a running simulator.
    let table = format!("failover-{}", ulid::Ulid::new().to_string().to_lowercase());
    let a = region_stack("a", &table).await;
    let b = region_stack("b", &table).await;
    let (alice_a, alice_b) = (a.user("alice"), b.user("alice"));
    let busy = alice_a.create_session().await;
    let idle = alice_a.create_session().await;
    let simulator = alice_a.start_simulator(&busy, &["BTC-USD"]).await;

    // A dry run lists them and writes nothing.
    let before = items(&table).await;
    let dry = stdout_of(&failover(
        &table,
        &["--from", "a", "--to", "b", "--dry-run"],
    ));
    assert!(
        dry.contains(&format!("would move {busy} a→b epoch 2")),
        "{dry}"
    );
    assert!(
        dry.contains("dry run a→b: 2 would move, 0 already"),
        "{dry}"
    );
    assert_eq!(items(&table).await, before);
    // Act
    let stdout = stdout_of(&failover(&table, &["--from", "a", "--to", "b"]));

    // Assert: the RPO bound, the age of a's last beat (its streamer beats every 500 ms).
    let age: u64 = stdout
        .split_once("rpo: a's last beat seen here is ")
        .and_then(|(_, rest)| rest.split_once(" ms old"))
        .and_then(|(age, _)| age.parse().ok())
        .unwrap_or_else(|| panic!("the RPO line: {stdout}"));
    assert!(age < 10_000, "{age} ms: {stdout}");

    // Assert: each session homed in b at epoch 2, the simulator failed, a fence on a.
    assert!(stdout.contains("fenced a at "), "{stdout}");
    assert!(
        stdout.contains(&format!("moved {busy} a→b epoch 2 (1 simulators failed)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("moved {idle} a→b epoch 2 (0 simulators failed)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "failover a→b: 2 moved, 0 already, 0 conflicts, 0 gone, 1 simulators failed in "
        ),
        "{stdout}"
    );
    let stored = items(&table).await;
    for session in [&busy, &idle] {
        let item = &stored[&(format!("SESSION#{session}"), "SESSION".to_owned())];
        assert_eq!(item["home_region"], AttributeValue::S("b".to_owned()));
        assert_eq!(item["home_epoch"], AttributeValue::N("2".to_owned()));
    }
    let fence = &stored[&("REGION#a".to_owned(), "FENCE".to_owned())];
    assert_eq!(fence["fenced_by"], AttributeValue::S("b".to_owned()));
    let busy_id = SessionId::parse("session", &busy).unwrap();
    let simulator_id = SimulatorId::parse("simulator", &simulator).unwrap();
    let store = DynamoStore::new(client(), &table, Arc::new(SystemClock));
    let failed = store
        .get_simulator(&busy_id, &simulator_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, SimulatorStatus::Failed);
    assert_eq!(failed.reason.as_deref(), Some(REGION_FAILOVER_REASON));

    // a answers writes 421 naming b; b writes.
    let path = format!("/v1/sessions/{busy}");
    let in_a = alice_a.delete(&path).await;
    assert_eq!(in_a.status, StatusCode::MISDIRECTED_REQUEST, "{in_a:?}");
    assert_eq!(in_a.body["home_region"], "b");
    assert_eq!(in_a.body["home_epoch"], 2);
    assert_eq!(in_a.body["home_api"], API_B);
    let in_b = alice_b.delete(&path).await;
    assert_eq!(in_b.status, StatusCode::OK, "{in_b:?}");
    assert_eq!(in_b.body["status"], "closed");

    // A re-run moves nothing: none is homed in a any more, and named ones are already in b.
    let again = stdout_of(&failover(&table, &["--from", "a", "--to", "b"]));
    assert!(again.contains("fenced a already at "), "{again}");
    assert!(
        again.contains("failover a→b: 0 moved, 0 already, 0 conflicts"),
        "{again}"
    );
    let named = format!("{busy},{idle}");
    let again = stdout_of(&failover(
        &table,
        &["--from", "a", "--to", "b", "--sessions", &named],
    ));
    assert!(
        again.contains(&format!("already {busy} in b epoch 2")),
        "{again}"
    );
    assert!(
        again.contains(&format!("already {idle} in b epoch 2")),
        "{again}"
    );
    assert!(
        again.contains("failover a→b: 0 moved, 2 already, 0 conflicts"),
        "{again}"
    );

    // A session another failover moved elsewhere is a conflict: named, and the exit is 1.
    let conflict = failover(&table, &["--from", "a", "--to", "c", "--sessions", &idle]);
    assert!(!conflict.status.success());
    let stdout = String::from_utf8_lossy(&conflict.stdout);
    assert!(
        stdout.contains(&format!("conflict {idle} homed in b epoch 2")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_region_itself_or_to_a_malformed_region_is_refused_and_writes_nothing() {
    let table = format!("failover-{}", ulid::Ulid::new().to_string().to_lowercase());
    let a = region_stack("a", &table).await;
    a.user("alice").create_session().await;
    let before = items(&table).await;

    let same = failover(&table, &["--from", "a", "--to", "a"]);
    let malformed = failover(&table, &["--from", "a", "--to", "EU_WEST"]);

    for (output, expected) in [
        (&same, "--from and --to are both \"a\""),
        (&malformed, "--to \"EU_WEST\" is not a region name"),
    ] {
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
    assert_eq!(items(&table).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_lists_the_late_writes_of_a_fenced_region_and_takes_them_over_again() {
    // Arrange: two sessions born in a; one's last write in a will replicate only after the
    // failover (its item as it was before the takeover, put back as last-writer-wins would).
    let table = format!("reconcile-{}", ulid::Ulid::new().to_string().to_lowercase());
    let a = region_stack("a", &table).await;
    let alice = a.user("alice");
    let late = alice.create_session().await;
    let moved = alice.create_session().await;
    let before = items(&table).await;
    let late_key = (format!("SESSION#{late}"), "SESSION".to_owned());
    let late_write = before[&late_key].clone();

    // A region no failover fenced has nothing to reconcile: refused, nothing written.
    let unfenced = reconcile(&table, &["--region", "a", "--into", "b"]);
    assert!(!unfenced.status.success());
    let stderr = String::from_utf8_lossy(&unfenced.stderr);
    assert!(stderr.contains("region \"a\" is not fenced"), "{stderr}");
    assert_eq!(items(&table).await, before);

    stdout_of(&failover(&table, &["--from", "a", "--to", "b"]));
    client()
        .put_item()
        .table_name(&table)
        .set_item(Some(late_write))
        .send()
        .await
        .unwrap();

    // A dry run lists the late write alone, and writes nothing.
    let landed = items(&table).await;
    let dry = stdout_of(&reconcile(
        &table,
        &["--region", "a", "--into", "b", "--dry-run"],
    ));
    assert!(
        dry.contains(&format!(
            "late {late} homed in a epoch 1: status active, version 1; what b wrote to it since "
        )),
        "{dry}"
    );
    assert!(!dry.contains(&moved), "{dry}");
    assert!(
        dry.contains(&format!("would move {late} a→b epoch 2")),
        "{dry}"
    );
    assert_eq!(items(&table).await, landed);

    // Into the region itself: refused, naming the flags.
    let itself = reconcile(&table, &["--region", "a", "--into", "a"]);
    assert!(!itself.status.success());
    let stderr = String::from_utf8_lossy(&itself.stderr);
    assert!(
        stderr.contains("--region and --into are both \"a\""),
        "{stderr}"
    );

    // Into another region than the one the failover chose: refused, naming it.
    let elsewhere = reconcile(&table, &["--region", "a", "--into", "c"]);
    assert!(!elsewhere.status.success());
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(
        stderr.contains("region \"a\" was failed over to \"b\", not \"c\""),
        "{stderr}"
    );

    // Act
    let stdout = stdout_of(&reconcile(&table, &["--region", "a", "--into", "b"]));

    // Assert: the late write is homed in b again, a stays fenced, a re-run finds nothing.
    assert!(stdout.contains("fenced a at "), "{stdout}");
    assert!(
        stdout.contains(&format!("moved {late} a→b epoch 2")),
        "{stdout}"
    );
    assert!(
        stdout.contains("reconcile a→b: 1 late writes; a stays fenced"),
        "{stdout}"
    );
    let stored = items(&table).await;
    assert_eq!(
        stored[&late_key]["home_region"],
        AttributeValue::S("b".to_owned())
    );
    assert_eq!(
        stored[&late_key]["home_epoch"],
        AttributeValue::N("2".to_owned())
    );
    assert!(stored.contains_key(&("REGION#a".to_owned(), "FENCE".to_owned())));
    let again = stdout_of(&reconcile(&table, &["--region", "a", "--into", "b"]));
    assert!(again.contains("reconcile a→b: 0 late writes"), "{again}");
}
