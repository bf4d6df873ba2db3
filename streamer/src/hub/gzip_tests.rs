//! A gzip subscription against a plain one: the same bytes, compressed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use session_core::domain::EventId;

use super::stream::tests::{snapshot, stream, updates};
use super::{Delivery, Start, Subscription};
use crate::compression::tests::gunzip;

/// The next delivery's bytes.
async fn next(client: &mut Subscription) -> Bytes {
    let delivery = tokio::time::timeout(Duration::from_secs(1), client.next())
        .await
        .expect("a delivery");
    let (Delivery::Frames(bytes) | Delivery::Last(bytes)) = delivery;
    bytes
}

#[tokio::test]
async fn a_gzip_client_is_sent_the_plain_clients_bytes_compressed() {
    let stream = stream("sim");
    stream.publish(&[snapshot(2, 10)]);
    stream.publish(&updates(2, 11, 14));
    // Of another epoch: a reset and a snapshot (its own frames), then the window's reads.
    let start = Start::After(EventId {
        epoch: 1,
        sequence: 5,
    });
    let mut plain = Subscription::new(Arc::clone(&stream), start);
    let mut gzipped = Subscription::new(Arc::clone(&stream), start);
    gzipped.use_gzip();
    let (mut expected, mut sent) = (Vec::new(), Vec::new());
    sent.extend_from_slice(&gzipped.gzip().unwrap().open(b""));

    for round in 0..2 {
        stream.publish(&updates(2, 15 + round * 3, 17 + round * 3));
        stream.wake();
        expected.extend_from_slice(&next(&mut plain).await);
        sent.extend_from_slice(&next(&mut gzipped).await);
    }
    sent.extend_from_slice(&gzipped.gzip().unwrap().trailer());

    assert!(String::from_utf8_lossy(&expected).contains("event: reset"));
    assert_eq!(gunzip(&sent), expected);
}
