//! Gzip SSE responses over real TCP: negotiated from `Accept-Encoding`, decoded as they
//! arrive, resumed with `Last-Event-ID`, and ended with a checked trailer on shutdown.

use std::time::Duration;

use session_tests::book_replica::Replica;
use session_tests::sse::{self, SseStream};
use session_tests::stream_fixture::{Fixture, PATIENCE, read_events};

use crate::chaos::metric;

/// Opens the fixture's stream with a bearer token and `headers`.
async fn open(fixture: &Fixture, headers: &[(&str, &str)]) -> SseStream {
    let bearer = format!("Bearer {}", fixture.token);
    let mut all = vec![("authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    sse::connect(&fixture.stream_url(), &all)
        .await
        .expect("the stream opens")
}

fn header<'a>(stream: &'a SseStream, name: &str) -> Option<&'a str> {
    stream.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the response's `Vary` names `Accept-Encoding` (beside CORS's names).
fn varies_by_encoding(stream: &SseStream) -> bool {
    stream
        .headers
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("accept-encoding")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_accepts_gzip_gets_a_gzip_stream_and_resumes_it_with_last_event_id() {
    let fixture = Fixture::start(&["BTC-USD", "ETH-USD"], 1_000, |_| {}).await;
    let compressed_before = metric(&fixture, "streamer_sse_compressed_responses_total", None)
        .await
        .unwrap_or(0.0);
    let mut replica = Replica::default();
    let gzip = [("accept-encoding", "gzip, deflate, br")];

    let mut first = open(&fixture, &gzip).await;
    read_events(&mut first, &mut replica, 200).await;
    let last = replica.position().unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut resumed = open(&fixture, &[gzip[0], ("last-event-id", &last)]).await;
    read_events(&mut resumed, &mut replica, 200).await;

    assert_eq!(header(&resumed, "content-encoding"), Some("gzip"));
    assert!(varies_by_encoding(&resumed));
    assert_eq!(replica.events, 400, "every event, in order, decoded");
    assert_eq!(
        replica.resets, 0,
        "the resume inside the window is a replay"
    );
    assert!(
        metric(&fixture, "streamer_sse_compressed_responses_total", None)
            .await
            .unwrap()
            >= compressed_before + 2.0
    );
}

#[tokio::test]
async fn a_client_that_refuses_gzip_or_names_none_gets_plain_frames() {
    let fixture = Fixture::start(&["BTC-USD"], 500, |_| {}).await;
    for accept in [
        None,
        Some("gzip;q=0, identity"),
        Some("identity"),
        Some("br"),
    ] {
        let headers: Vec<_> = accept.map(|a| ("accept-encoding", a)).into_iter().collect();
        let mut stream = open(&fixture, &headers).await;
        let mut replica = Replica::default();

        read_events(&mut stream, &mut replica, 20).await;

        assert_eq!(header(&stream, "content-encoding"), None, "{accept:?}");
        assert!(varies_by_encoding(&stream), "{accept:?}");
        assert_eq!(replica.events, 20, "{accept:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_compression_off_a_gzip_client_gets_plain_frames() {
    let fixture = Fixture::start_stack(&["BTC-USD"], 500, |s| {
        s.streamer.sse_compression = false;
    })
    .await;
    let mut stream = open(&fixture, &[("accept-encoding", "gzip")]).await;
    let mut replica = Replica::default();

    read_events(&mut stream, &mut replica, 20).await;

    assert_eq!(header(&stream, "content-encoding"), None);
    assert!(!varies_by_encoding(&stream));
    assert_eq!(replica.events, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_stream_ended_by_shutdown_is_a_complete_gzip_file() {
    let fixture = Fixture::start_stack(&["BTC-USD"], 500, |s| {
        s.streamer.drain_deadline_secs = Duration::from_secs(2);
    })
    .await;
    let mut stream = open(&fixture, &[("accept-encoding", "gzip")]).await;
    read_events(&mut stream, &mut Replica::default(), 20).await;

    let shutdown = tokio::spawn(fixture.api.stack.shutdown());
    let advice = loop {
        let event = stream
            .next(PATIENCE)
            .await
            .expect("an advice before the end");
        if event.event == "reconnect" {
            break event;
        }
    };
    let end = stream.next(PATIENCE).await;

    assert_eq!(advice.data["reason"], "draining");
    assert!(end.is_none(), "the response ends");
    assert!(stream.gzip_checked, "its trailer's CRC and length match");
    tokio::time::timeout(Duration::from_secs(30), shutdown)
        .await
        .expect("the stack stops")
        .unwrap()
        .expect("the stack stops cleanly");
}
