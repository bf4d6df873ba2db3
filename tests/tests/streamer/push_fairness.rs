//! `@connections` fairness: one connection whose posts fail slowly does not hold up the others.
//!
//! The streamer posts through a real HTTP server on loopback that passes every call on to the
//! local WebSocket API emulator, except those of one connection (the first one posted to): it
//! answers them with 500 after a delay and counts how many are under way at once. The pod has
//! ONE post permit, so a slow connection that kept its permit across its retries (~8 s of them)
//! would stall every other connection until it gave up.

use std::time::Duration;

use session_tests::slow_connections::SlowConnections;
use session_tests::stream_fixture::{Fixture, PATIENCE};

use crate::ws::{WsClient, ws_url};

/// How long the slow connection's endpoint takes to refuse each post.
const SLOW: Duration = Duration::from_millis(300);
/// Connections beside the slow one.
const OTHERS: usize = 3;
/// `events` messages each other connection must get while the slow one is still retried.
const MESSAGES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_posts_fail_slowly_does_not_delay_pushes_to_the_others() {
    // Arrange: one post permit for the pod, posts through the endpoint.
    let (url, endpoint) = SlowConnections::serve(Some(SLOW)).await;
    let fixture = Fixture::start_stack(&["BTC-USD"], 200, |s| {
        s.streamer.push_poll_ms = Duration::from_millis(100);
        s.streamer.push_max_concurrent_posts = 1;
        s.streamer.connections_url = Some(url);
    })
    .await;
    endpoint.forward_to(&fixture);
    // The slow connection is the first one open: its first post is being refused.
    let _slow = WsClient::open(&ws_url(&fixture, None).await).await;
    tokio::time::timeout(PATIENCE, async {
        while endpoint.attempts() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the streamer posts to the first connection");

    // Act: the others open and read while the slow one is retried.
    let mut others = Vec::new();
    for _ in 0..OTHERS {
        others.push(WsClient::open(&ws_url(&fixture, None).await).await);
    }
    let reads = others.iter_mut().map(|client| async move {
        while client.messages < MESSAGES {
            client.next().await;
        }
    });
    tokio::time::timeout(PATIENCE, futures_util::future::join_all(reads))
        .await
        .expect("every other connection gets its messages");

    // Assert
    assert!(
        !endpoint.gave_up(),
        "the others were served while the slow connection was still retried, not after it was given up"
    );
    // Its retries go on; however many, never two at once.
    tokio::time::timeout(PATIENCE, async {
        while endpoint.attempts() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the slow connection is retried");
    assert_eq!(
        endpoint.most_in_flight(),
        1,
        "one post at a time to the slow connection: it held at most one permit"
    );
}
