//! Parked clients, over real loopback sockets: the stream's writers write to them, and give
//! them back to their tasks for what only a task can do.

use std::sync::Arc;
use std::time::Duration;

use session_core::domain::EventId;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};

use super::stream::tests::{snapshot, stream, updates};
use super::{Delivery, Lane, Start, Subscription};

const PATIENCE: Duration = Duration::from_secs(5);

/// A connected pair: the server's side (written to) and the client's (read).
async fn socket_pair() -> (Arc<TcpStream>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (Arc::new(server), client)
}

/// A client of a stream at sequence 10, at its head (its snapshot taken).
async fn client_at_head() -> (Arc<super::Stream>, Subscription) {
    let stream = stream("sim");
    stream.publish(&[snapshot(1, 10)]);
    let mut client = Subscription::new(Arc::clone(&stream), Start::Snapshot);
    let first = tokio::time::timeout(PATIENCE, client.next()).await.unwrap();
    assert!(matches!(first, Delivery::Frames(_)));
    (stream, client)
}

/// Reads from `socket` until `text` has arrived (or fails after a while); what arrived.
async fn read_until(socket: &mut TcpStream, text: &str) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !String::from_utf8_lossy(&received).contains(text) {
        let read = tokio::time::timeout_at(deadline, socket.read(&mut buffer))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{text:?} never arrived; got {:?}",
                    String::from_utf8_lossy(&received)
                )
            })
            .unwrap();
        assert!(read > 0, "the socket closed");
        received.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8(received).unwrap()
}

fn position(sequence: u64) -> EventId {
    EventId { epoch: 1, sequence }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_client_is_written_each_new_entry_by_the_streams_writers_as_a_chunk() {
    let (stream, mut client) = client_at_head().await;
    let (server, mut peer) = socket_pair().await;
    let lane = Arc::new(Lane::default());
    assert!(client.park(&lane, &server), "at the head: parked");

    stream.publish(&updates(1, 11, 12));
    stream.wake();
    let first = read_until(&mut peer, "\"seq\":12").await;
    stream.publish(&updates(1, 13, 13));
    stream.wake();
    let second = read_until(&mut peer, "\"seq\":13").await;

    for chunk in [&first, &second] {
        let (size, rest) = chunk.split_once("\r\n").expect("a chunk's size line");
        let size = usize::from_str_radix(size, 16).expect("a hex size");
        assert_eq!(rest.len(), size + 2, "one whole chunk: {chunk:?}");
        assert!(rest.ends_with("\r\n"), "{chunk:?}");
    }
    assert_eq!(first.matches("event: delta").count(), 2, "{first}");
    assert!(client.take_back(&lane).is_none(), "nothing left to write");
    assert_eq!(client.last_delivered(), Some(position(13)));
    // Taken back at the head: nothing more for its task.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), client.next())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_not_at_the_head_is_not_parked() {
    let (stream, mut client) = client_at_head().await;
    let (server, _peer) = socket_pair().await;
    stream.publish(&updates(1, 11, 11));

    assert!(!client.park(&Arc::new(Lane::default()), &server));
    let Delivery::Frames(bytes) = client.next().await else {
        panic!("frames")
    };
    assert!(String::from_utf8_lossy(&bytes).contains("\"seq\":11"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_takes_nothing_gives_the_lane_back_and_its_task_sends_the_entry() {
    let (stream, mut client) = client_at_head().await;
    let (server, _peer) = socket_pair().await;
    // Fill the socket (the peer does not read) until it takes nothing more.
    let filler = vec![b'x'; 64 * 1024];
    while server.try_write(&filler).is_ok() {}
    let lane = Arc::new(Lane::default());
    assert!(client.park(&lane, &server));

    stream.publish(&updates(1, 11, 11));
    stream.wake();
    tokio::time::timeout(PATIENCE, lane.given_back())
        .await
        .expect("given back");

    assert!(client.take_back(&lane).is_none(), "nothing was written");
    let Delivery::Frames(bytes) = client.next().await else {
        panic!("frames")
    };
    assert!(
        String::from_utf8_lossy(&bytes).contains("\"seq\":11"),
        "the task sends what the writer could not"
    );
    assert_eq!(client.last_delivered(), Some(position(11)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fallen_behind_is_given_back_to_be_conflated_by_its_task() {
    let (stream, mut client) = client_at_head().await;
    let (server, _peer) = socket_pair().await;
    let lane = Arc::new(Lane::default());
    assert!(client.park(&lane, &server));

    // More than the client's queue (4 KiB in the test settings) before the writers look.
    stream.publish(&updates(1, 11, 80));
    stream.wake();
    tokio::time::timeout(PATIENCE, lane.given_back())
        .await
        .expect("given back");

    client.take_back(&lane);
    let Delivery::Frames(bytes) = client.next().await else {
        panic!("frames")
    };
    assert!(
        String::from_utf8_lossy(&bytes).contains(r#""cause":"conflated""#),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_taken_back_and_parked_again_is_written_once_per_entry() {
    let (stream, mut client) = client_at_head().await;
    let (server, mut peer) = socket_pair().await;
    let lane = Arc::new(Lane::default());
    assert!(client.park(&lane, &server));
    client.take_back(&lane);
    assert!(client.park(&lane, &server), "parked again");

    stream.publish(&updates(1, 11, 11));
    stream.wake();
    stream.publish(&updates(1, 12, 12));
    stream.wake();
    let received = read_until(&mut peer, "\"seq\":12").await;

    assert_eq!(received.matches("\"seq\":11").count(), 1, "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_gives_every_lane_back_and_parks_none_after() {
    let (stream, mut client) = client_at_head().await;
    let (server, _peer) = socket_pair().await;
    let lane = Arc::new(Lane::default());
    assert!(client.park(&lane, &server));

    stream.release();
    tokio::time::timeout(PATIENCE, lane.given_back())
        .await
        .expect("given back");

    client.take_back(&lane);
    assert!(!client.park(&lane, &server), "released: no park");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_starts_a_writer_per_share_as_its_shares_get_lanes_up_to_one_per_worker() {
    let stream = stream("sim");
    stream.publish(&[snapshot(1, 10)]);
    let mut parked = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..3 {
        let mut client = Subscription::new(Arc::clone(&stream), Start::Snapshot);
        tokio::time::timeout(PATIENCE, client.next()).await.unwrap();
        let (server, peer) = socket_pair().await;
        let lane = Arc::new(Lane::default());
        assert!(client.park(&lane, &server));
        writers.push(stream.lock().lanes.writers());
        parked.push((client, lane, server, peer));
    }

    assert_eq!(writers, [1, 2, 2], "one writer per worker thread at most");
    stream.publish(&updates(1, 11, 11));
    stream.wake();
    for (_, _, _, peer) in &mut parked {
        read_until(peer, "\"seq\":11").await;
    }
}
