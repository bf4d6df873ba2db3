//! Rate limits of SSE opens, on loopback with distinct source addresses: a user opening
//! streams in a flood gets `429`s with `Retry-After` and the `RateLimit` header fields, and so
//! does an address, while a well-behaved caller at the same time opens its streams.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use session_tests::stream_fixture::Fixture;

fn address(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// The status and headers of opening `url` from `from` with `bearer` (the stream is dropped
/// once its head arrived).
async fn open(
    url: &str,
    bearer: &str,
    from: IpAddr,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let client = reqwest::Client::builder()
        .local_address(from)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let response = client
        .get(url)
        .header("authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = if status == StatusCode::OK {
        String::new()
    } else {
        response.text().await.unwrap()
    };
    (status, headers, body)
}

fn assert_limited(
    answer: &(StatusCode, reqwest::header::HeaderMap, String),
    class: &str,
    policy: &str,
) {
    let (status, headers, body) = answer;
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body.contains("urn:session-service:problem:rate-limited"),
        "{body}"
    );
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert!(header("retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(header("ratelimit-policy"), policy);
    assert!(header("ratelimit").starts_with(&format!("\"{class}\";r=0;t=")));
}

#[tokio::test]
async fn a_user_opening_streams_in_a_flood_gets_429s_while_another_user_opens_theirs() {
    let fixture = Fixture::start(&["BTC-USD"], 50, |_| {}).await;
    let url = fixture.stream_url();
    let bob = fixture.api.stack.token("bob");
    let bobs_session = fixture.api.user("bob").create_session().await;
    fixture
        .api
        .user("bob")
        .start_simulator(&bobs_session, &["ETH-USD"])
        .await;
    let bobs_url = url.replace(&fixture.session, &bobs_session);

    // 16 opens at once by alice from one address (under the address's burst of 40).
    let started = std::time::Instant::now();
    let (flood, steady) = tokio::join!(
        join_all((0..16).map(|_| open(&url, &fixture.token, address(2)))),
        async {
            let mut statuses = Vec::new();
            for _ in 0..3 {
                statuses.push(open(&bobs_url, &bob, address(3)).await.0);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            statuses
        },
    );

    let opened = flood.iter().filter(|a| a.0 == StatusCode::OK).count();
    // The burst, plus what the rate (2 a second) refilled while the flood ran.
    let most = 10 + (2.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!((10..=most).contains(&opened), "{opened} opened");
    for refused in flood.iter().filter(|a| a.0 != StatusCode::OK) {
        assert_limited(refused, "sse-connect", "\"sse-connect\";q=10;w=5");
    }
    assert!(
        steady.iter().all(|s| *s == StatusCode::OK),
        "the well-behaved user: {steady:?}"
    );
}

#[tokio::test]
async fn an_address_opening_streams_in_a_flood_gets_429s_while_another_address_is_served() {
    let fixture = Fixture::start(&["BTC-USD"], 50, |_| {}).await;
    let url = fixture.stream_url();
    // Users of their own (each within its own limit), all behind one address.
    let tokens: Vec<String> = (0..60)
        .map(|i| fixture.api.stack.token(&format!("user-{i}")))
        .collect();
    let alice = fixture.token.clone();

    let (flood, steady) = tokio::join!(
        join_all(tokens.iter().map(|token| open(&url, token, address(5)))),
        async {
            let mut answers = Vec::new();
            for _ in 0..3 {
                answers.push(open(&url, &alice, address(6)).await.0);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            answers
        },
    );

    let limited: Vec<_> = flood
        .iter()
        .filter(|a| a.0 == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(limited.len() >= 15, "{} limited", limited.len());
    for refused in limited {
        assert_limited(refused, "connect-address", "\"connect-address\";q=40;w=4");
    }
    assert!(
        steady.iter().all(|s| *s == StatusCode::OK),
        "the well-behaved address: {steady:?}"
    );
}
