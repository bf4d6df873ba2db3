//! The raw deflate (RFC 1951) of push messages for connections granted `deflate`, computed
//! once per message: the pushers of a session share a [`DeflateCache`], so connections that are
//! sent the same message (the usual case: one hub stream, the same batches) get the bytes the
//! first of them deflated. A message is keyed by its content; the cache keeps the last
//! [`CACHE_MESSAGES`] of a session.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::DeflateEncoder;

/// Messages remembered per session: enough for every connection of a session to find the
/// message its peers deflated moments before (they post the same batch within a few
/// milliseconds), small enough to bound the memory (a message is at most 128 KiB, most are
/// under 32 KiB).
pub const CACHE_MESSAGES: usize = 64;

/// The raw deflate of `message` (no zlib or gzip wrapper): what
/// `new DecompressionStream('deflate-raw')` inflates.
pub fn deflate_raw(message: &[u8]) -> Bytes {
    let mut encoder = DeflateEncoder::new(
        Vec::with_capacity(message.len() / 4 + 64),
        Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(message);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// Deflated messages of one session, each computed once.
#[derive(Debug, Default)]
pub struct DeflateCache {
    entries: Mutex<Entries>,
    deflated: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    by_message: HashMap<Bytes, Arc<OnceLock<Bytes>>>,
    order: VecDeque<Bytes>,
}

impl DeflateCache {
    /// The raw deflate of `message`, deflated now unless a pusher of the session already did.
    pub fn deflate(&self, message: &Bytes) -> Bytes {
        let slot = {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(slot) = entries.by_message.get(message) {
                Arc::clone(slot)
            } else {
                if entries.order.len() >= CACHE_MESSAGES
                    && let Some(oldest) = entries.order.pop_front()
                {
                    entries.by_message.remove(&oldest);
                }
                let slot = Arc::new(OnceLock::new());
                entries.order.push_back(message.clone());
                entries
                    .by_message
                    .insert(message.clone(), Arc::clone(&slot));
                slot
            }
        };
        // Outside the lock: a peer asking for the same message waits for this one deflate
        // (well under a millisecond for 32 KiB), others go on.
        slot.get_or_init(|| {
            self.deflated.fetch_add(1, Ordering::Relaxed);
            deflate_raw(message)
        })
        .clone()
    }

    /// How many messages were deflated (not served from the cache) so far.
    pub fn deflated(&self) -> u64 {
        self.deflated.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use flate2::read::DeflateDecoder;

    use super::*;

    fn inflate(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        DeflateDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn a_message_sent_to_many_connections_is_deflated_once_and_inflates_to_itself() {
        let cache = DeflateCache::default();
        let message = Bytes::from(format!(
            r#"{{"type":"events","events":[{}]}}"#,
            r#"{"id":"1-1","event":"delta","data":{"seq":1}}"#.repeat(50)
        ));

        // 100 connections, each with its own copy of the same message (each packs its own).
        let deflated: Vec<Bytes> = (0..100)
            .map(|_| cache.deflate(&Bytes::copy_from_slice(&message)))
            .collect();

        assert_eq!(cache.deflated(), 1);
        assert!(deflated.iter().all(|d| *d == deflated[0]));
        assert_eq!(inflate(&deflated[0]), message);
        assert!(
            deflated[0].len() < message.len() / 5,
            "{}",
            deflated[0].len()
        );
    }

    #[test]
    fn the_cache_keeps_the_last_messages_only() {
        let cache = DeflateCache::default();
        let message = |i: usize| Bytes::from(format!(r#"{{"type":"events","seq":{i}}}"#));

        for i in 0..=CACHE_MESSAGES {
            cache.deflate(&message(i));
        }
        cache.deflate(&message(CACHE_MESSAGES));
        cache.deflate(&message(0));

        // The last one again was remembered; the first had been dropped.
        assert_eq!(cache.deflated(), CACHE_MESSAGES as u64 + 2);
    }
}
