//! The streamer as a service: health, metrics, and the drain on shutdown.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use session_tests::stream_fixture::{Fixture, PATIENCE, read_events};

use crate::chaos::{Seen, eventually, metric};
use crate::slow::RawClient;

/// `GET {sse}{path}`: the status and the body as JSON.
async fn get_json(fixture: &Fixture, path: &str) -> (u16, Value) {
    let url = format!("{}{path}", fixture.api.stack.endpoints().sse);
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn health_and_metrics_report_the_streamer_and_what_it_delivered() {
    let fixture = Fixture::start(&["BTC-USD"], 500, |_| {}).await;
    let key = fixture.backend_id().await;
    let (live_status, live) = get_json(&fixture, "/health/live").await;
    let (ready_status, ready) = get_json(&fixture, "/health/ready").await;

    let mut stream = fixture.open().await;
    let mut seen = Seen::default();
    read_events(&mut stream, &mut seen.replica, 100).await;
    let response = reqwest::get(format!("{}/metrics", fixture.api.stack.endpoints().sse))
        .await
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();

    assert_eq!(live_status, 200);
    assert_eq!(live, json!({ "status": "ok" }));
    assert_eq!(ready_status, 200, "{ready}");
    assert_eq!(ready["status"], "ok", "{ready}");
    assert_eq!(ready["reasons"], json!([]), "{ready}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for name in [
        "streamer_sse_clients",
        "streamer_events_delivered_total",
        "streamer_upstream_events_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} in:\n{text}"
        );
    }
    // The registry is the process's, shared with the tests running beside this one: lower
    // bounds only.
    assert!(
        metric(&fixture, "streamer_sse_clients", None)
            .await
            .unwrap()
            >= 1.0
    );
    assert!(
        metric(&fixture, "streamer_events_delivered_total", None)
            .await
            .unwrap()
            >= 100.0
    );
    assert!(
        metric(&fixture, "streamer_upstream_events_total", None)
            .await
            .unwrap()
            >= 100.0
    );
    // The pod's windows together (no per-simulator series); this stream's from the hub.
    assert!(text.contains("streamer_window_events "), "{text}");
    let (window, _) = fixture.api.stack.streamer_hub().streams()[0].window_size();
    assert!(window >= 100, "this stream's window: {window}");
    assert!(!text.contains(&key), "no series names a simulator:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_keep_no_series_of_a_simulator_that_came_and_went() {
    let fixture = Fixture::start_stack(&["BTC-USD"], 200, |s| {
        s.streamer.linger_secs = Duration::from_secs(0);
    })
    .await;
    let key = fixture.backend_id().await;
    let mut stream = fixture.open().await;
    let mut seen = Seen::default();
    read_events(&mut stream, &mut seen.replica, 20).await;
    let while_live = fixture.metrics().await;

    drop(stream);
    fixture.stop_simulator().await;
    eventually("the stream is gone", Duration::from_secs(30), || async {
        fixture.api.stack.streamer_hub().streams().is_empty()
    })
    .await;
    let after = fixture.metrics().await;

    assert!(
        while_live.contains("# TYPE streamer_window_events "),
        "{while_live}"
    );
    // Every simulator that ever streamed would otherwise leave its series behind for the life
    // of the process: memory that grows with every instance started.
    let left: Vec<&str> = after.lines().filter(|l| l.contains(&key)).collect();
    assert!(left.is_empty(), "series of the gone simulator: {left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_tells_every_client_to_reconnect_and_ends_its_response() {
    let fixture = Fixture::start_stack(&["BTC-USD"], 500, |s| {
        s.streamer.drain_deadline_secs = Duration::from_secs(2);
    })
    .await;
    let mut streams = [fixture.open().await, fixture.open().await];
    let mut seen: Vec<Seen> = streams.iter().map(|_| Seen::default()).collect();
    for (stream, seen) in streams.iter_mut().zip(&mut seen) {
        read_events(stream, &mut seen.replica, 20).await;
    }

    let started = Instant::now();
    let shutdown = tokio::spawn(fixture.api.stack.shutdown());
    let mut advice = Vec::new();
    for (stream, seen) in streams.iter_mut().zip(&mut seen) {
        loop {
            let event = stream
                .next(PATIENCE)
                .await
                .expect("an advice before the end");
            seen.take(event.clone());
            if event.event == "reconnect" {
                advice.push(event);
                break;
            }
        }
        assert!(stream.next(PATIENCE).await.is_none(), "the response ends");
    }
    let stopped = tokio::time::timeout(Duration::from_secs(30), shutdown).await;
    let took = started.elapsed();

    for advice in &advice {
        assert_eq!(advice.data["reason"], "draining", "{advice:?}");
        assert_eq!(advice.data["retry_ms"], 1_000);
    }
    stopped
        .expect("the stack stops")
        .unwrap()
        .expect("the stack stops cleanly");
    assert!(
        took < Duration::from_secs(10),
        "clients that take the advice leave at once: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_the_advice_holds_the_shutdown_no_longer_than_the_drain_deadline()
{
    let fixture = Fixture::start_stack(&["BTC-USD", "ETH-USD"], 10_000, |s| {
        s.streamer.drain_deadline_secs = Duration::from_secs(2);
    })
    .await;
    let mut stuck = RawClient::open(&fixture.stream_url(), &fixture.token).await;
    // Enough for its socket to fill: the streamer's writes to it stop.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let started = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(30), fixture.api.stack.shutdown()).await;
    let took = started.elapsed();
    // Whatever reaches it when it reads again is gapless and ends: what its socket buffers
    // held, then the end of the stream (the deadline cut the connection), or the advice if
    // there was room for it.
    let mut seen = Seen::default();
    while let Some(event) = stuck.next().await {
        seen.take(event);
    }

    stopped
        .expect("the drain deadline ends the wait")
        .expect("the stack stops cleanly");
    assert!(
        took >= Duration::from_secs(2),
        "the drain waited for the client: {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "the drain gave up at its deadline: {took:?}"
    );
    assert!(seen.replica.events > 0);
    if let Some(last) = seen.notices.last().filter(|e| e.event == "reconnect") {
        assert_eq!(last.data["reason"], "draining", "{last:?}");
    }
}
