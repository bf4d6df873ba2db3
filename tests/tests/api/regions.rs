//! A session's home region (`docs/multi-region.md`): two REST stacks configured as regions `a`
//! and `b` over ONE table of moto's DynamoDB (what a global table with no replication lag looks
//! like). A session is born in `a` and says so in its id; `b` serves its reads naming the home,
//! and answers its writes `421 wrong-region` naming `a` and its API, changing nothing.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::StatusCode;
use serde_json::json;
use session_core::auth::keys::{SigningKey, VerifyKeys};
use session_core::config::StoreSettings;
use session_core::store::DynamoStore;
use session_tests::moto::Moto;
use session_tests::regions::{self, API_A};
use session_tests::test_api::{Answer, TestApi};

/// The local stack as region `this` of the deployment {a (primary), b}, on `table` of moto.
async fn region_stack(this: &str, table: &str) -> TestApi {
    regions::region_stack(this, table, |_| {}).await
}

/// The same, with the ticket key pair `keys` (shared by regions, as a deployment's are).
async fn region_stack_with_keys(
    this: &str,
    table: &str,
    keys: Option<(SigningKey, VerifyKeys)>,
) -> TestApi {
    regions::region_stack(this, table, move |s| {
        if let Some((signing, verify)) = keys {
            s.auth.set_ticket_keys(Some(signing), Some(verify)).unwrap();
        }
    })
    .await
}

/// The session item as stored, every attribute.
async fn session_item(table: &str, session: &str) -> BTreeMap<String, AttributeValue> {
    item(table, &format!("SESSION#{session}"), "SESSION")
        .await
        .expect("the session item")
}

/// The item `pk` / `sk` of `table`, if any.
async fn item(table: &str, pk: &str, sk: &str) -> Option<BTreeMap<String, AttributeValue>> {
    let client =
        DynamoStore::local_client(Moto::shared().endpoint(), &StoreSettings::default(), None);
    let out = client
        .get_item()
        .table_name(table)
        .key("PK", AttributeValue::S(pk.to_owned()))
        .key("SK", AttributeValue::S(sk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("moto answers");
    out.item.map(|item| item.into_iter().collect())
}

/// The `connections` count of `item`, 0 if it has none.
fn connections_of(item: Option<&BTreeMap<String, AttributeValue>>) -> u32 {
    item.and_then(|i| i.get("connections"))
        .and_then(|n| n.as_n().ok())
        .map_or(0, |n| n.parse().expect("a count"))
}

fn assert_wrong_region(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::MISDIRECTED_REQUEST, "{answer:?}");
    assert_eq!(answer.problem(), "wrong-region");
    assert_eq!(answer.body["home_region"], "a");
    assert_eq!(answer.body["home_epoch"], 1);
    assert_eq!(answer.body["home_api"], API_A);
}

#[tokio::test]
async fn a_session_born_in_a_is_read_in_b_with_its_home_and_written_only_in_a() {
    let table = format!("regions-{}", ulid::Ulid::new().to_string().to_lowercase());
    let a = region_stack("a", &table).await;
    let b = region_stack("b", &table).await;
    let (alice_a, alice_b) = (a.user("alice"), b.user("alice"));

    let session = alice_a.create_session().await;
    assert!(session.ends_with("-a"), "{session}");
    let path = format!("/v1/sessions/{session}");

    let read = alice_b.get(&path).await;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(read.header("x-session-home"), Some("a; epoch=1"));
    assert_eq!(read.body["session_id"], session.as_str());

    let before = session_item(&table, &session).await;
    assert_eq!(before["home_region"], AttributeValue::S("a".to_owned()));
    let close = alice_b.delete(&path).await;
    assert_wrong_region(&close);
    let start = alice_b
        .post_with(
            &format!("{path}/simulators"),
            &json!({ "symbols": ["BTC-USD"] }),
            &[("idempotency-key", "start-in-b")],
        )
        .await;
    assert_wrong_region(&start);
    assert_eq!(session_item(&table, &session).await, before);

    let closed = alice_a.delete(&path).await;
    assert_eq!(closed.status, StatusCode::OK, "{closed:?}");
    assert_eq!(closed.body["status"], "closed");
    // The key was never claimed in b: the same request in a is a new one, and it runs.
    let start = alice_a
        .post_with(
            &format!("{path}/simulators"),
            &json!({ "symbols": ["BTC-USD"] }),
            &[("idempotency-key", "start-in-b")],
        )
        .await;
    assert_eq!(start.problem(), "session-closed", "{start:?}");
}

#[tokio::test]
async fn a_write_in_b_to_a_session_b_cannot_read_yet_is_sent_home_by_its_id() {
    let table = format!("regions-{}", ulid::Ulid::new().to_string().to_lowercase());
    let b = region_stack("b", &table).await;
    let unreplicated = format!("ses_{}-a", ulid::Ulid::new());

    let close = b
        .user("alice")
        .delete(&format!("/v1/sessions/{unreplicated}"))
        .await;

    assert_wrong_region(&close);
    assert!(
        close.body["detail"]
            .as_str()
            .unwrap()
            .contains(&unreplicated)
    );
}

#[tokio::test]
async fn a_single_region_deployment_mints_bare_ids_and_names_no_home() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");

    let session = alice.create_session().await;
    let read = alice.get(&format!("/v1/sessions/{session}")).await;

    assert_eq!(session.len(), "ses_".len() + 26, "{session}");
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.header("x-session-home"), None);
    let keyed = alice
        .post_with("/v1/sessions", &json!({}), &[("idempotency-key", "k-1")])
        .await;
    assert_eq!(keyed.status, StatusCode::CREATED, "{keyed:?}");
    assert_eq!(keyed.header("idempotency-region"), None);
}

#[tokio::test]
async fn an_idempotent_write_names_the_region_that_answered_it_and_holds_its_key() {
    let table = format!("regions-{}", ulid::Ulid::new().to_string().to_lowercase());
    let b = region_stack("b", &table).await;
    let alice = b.user("alice");
    let key = [("idempotency-key", "create-in-b")];

    let first = alice.post_with("/v1/sessions", &json!({}), &key).await;
    let retry = alice.post_with("/v1/sessions", &json!({}), &key).await;
    let unkeyed = alice.post("/v1/sessions", &json!({})).await;

    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.header("idempotency-region"), Some("b"));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.header("idempotency-region"), Some("b"));
    assert_eq!(retry.body, first.body);
    assert_eq!(unkeyed.status, StatusCode::CREATED, "{unkeyed:?}");
    assert_eq!(unkeyed.header("idempotency-region"), None);
}

#[tokio::test]
async fn a_ticket_minted_in_a_is_refused_by_b_naming_a_and_admits_one_connection_in_a() {
    let table = format!("regions-{}", ulid::Ulid::new().to_string().to_lowercase());
    let key = SigningKey::generate("shared").unwrap();
    let keys = || Some((key.clone(), VerifyKeys::of(&[&key]).unwrap()));
    let a = region_stack_with_keys("a", &table, keys()).await;
    let b = region_stack_with_keys("b", &table, keys()).await;
    let alice_a = a.user("alice");
    let session = alice_a.create_session().await;
    alice_a.start_simulator(&session, &["BTC-USD"]).await;
    let (_, ws_url) = alice_a.ws_ticket(&session).await;
    let sse = alice_a
        .post(
            &format!("/v1/sessions/{session}/tickets"),
            &json!({ "transport": "sse" }),
        )
        .await;
    let sse_url = sse.body["url"].as_str().unwrap().to_owned();
    let (a_ws, b_ws) = (&a.stack.endpoints().ws_api, &b.stack.endpoints().ws_api);
    let (a_sse, b_sse) = (&a.stack.endpoints().sse, &b.stack.endpoints().sse);

    let ws_in_b =
        session_tests::ws::handshake_status(&ws_url.replacen(a_ws.as_str(), b_ws, 1)).await;
    let sse_in_b = reqwest::get(sse_url.replacen(a_sse.as_str(), b_sse, 1))
        .await
        .unwrap();
    let (sse_in_b_status, sse_in_b_body) = (
        sse_in_b.status(),
        sse_in_b.json::<serde_json::Value>().await.unwrap(),
    );
    let ws_in_a = session_tests::ws::handshake_status(&ws_url).await;
    let ws_again_in_a = session_tests::ws::handshake_status(&ws_url).await;

    assert_eq!(ws_in_b, 403);
    assert_eq!(sse_in_b_status, StatusCode::FORBIDDEN);
    assert_eq!(
        sse_in_b_body["type"],
        "urn:session-service:problem:ticket-wrong-region"
    );
    assert_eq!(sse_in_b_body["ticket_region"], "a");
    assert_eq!(ws_in_a, 101);
    assert_eq!(ws_again_in_a, 403);
}

#[tokio::test]
async fn a_websocket_opened_in_b_for_a_session_homed_in_a_is_counted_by_b_and_not_on_the_session() {
    let table = format!("regions-{}", ulid::Ulid::new().to_string().to_lowercase());
    let a = region_stack("a", &table).await;
    let b = region_stack("b", &table).await;
    let session = a.user("alice").create_session().await;

    // Tickets are not writes: b issues one for its own stream of a's session.
    let open = |url: String| async move {
        tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("the region admits the connection")
            .0
    };
    let (_, ws_url) = b.user("alice").ws_ticket(&session).await;
    let mut in_b = open(ws_url).await;
    let (_, ws_url) = a.user("alice").ws_ticket(&session).await;
    let _in_a = open(ws_url).await;

    // Each region admits its own and counts it on its own item; the session item, which only
    // a writes, counts nothing.
    let pk = format!("SESSION#{session}");
    assert_eq!(
        connections_of(Some(&session_item(&table, &session).await)),
        0
    );
    for region in ["a", "b"] {
        let counter = item(&table, &pk, &format!("WSCOUNT#{region}")).await;
        assert_eq!(connections_of(counter.as_ref()), 1, "{region}: {counter:?}");
    }
    // b's connection is b's, indexed for b's streamers (the primary's index is a's).
    let client =
        DynamoStore::local_client(Moto::shared().endpoint(), &StoreSettings::default(), None);
    let connections = client
        .query()
        .table_name(&table)
        .key_condition_expression("PK = :pk AND begins_with(SK, :conn)")
        .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
        .expression_attribute_values(":conn", AttributeValue::S("CONN#".to_owned()))
        .send()
        .await
        .expect("moto answers")
        .items
        .unwrap_or_default();
    let mut indexed: Vec<(Option<String>, String)> = connections
        .iter()
        .map(|c| {
            let region = c.get("region").and_then(|r| r.as_s().ok()).cloned();
            let gsi = c["GSI1PK"].as_s().expect("an index key").clone();
            (region, gsi.rsplit_once('#').expect("a shard").0.to_owned())
        })
        .collect();
    indexed.sort();
    assert_eq!(
        indexed,
        [
            (None, "WSCONN".to_owned()),
            (Some("b".to_owned()), "WSCONN#b".to_owned())
        ]
    );

    // b's `$disconnect` frees b's slot.
    in_b.close(None).await.expect("a clean close");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while connections_of(item(&table, &pk, "WSCOUNT#b").await.as_ref()) != 0 {
        assert!(std::time::Instant::now() < deadline, "b's slot never freed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let in_a = item(&table, &pk, "WSCOUNT#a").await;
    assert_eq!(connections_of(in_a.as_ref()), 1);
}
