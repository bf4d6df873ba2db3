//! The hub's registry: every stream by simulator key. A stream is put in by its first client
//! and taken out by its feed once idle; both happen under the registry's lock, so a client
//! joining and the removal of an idle stream never cross.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::stream::Stream;
use crate::metrics;

/// Every stream of this streamer, by simulator key.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    streams: Mutex<HashMap<String, Arc<Stream>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `attach` on the stream of `key` under the registry's lock, creating the stream
    /// with `create` first when there is none (then `true`, so the caller starts its feed).
    pub(crate) fn attach<T>(
        &self,
        key: &str,
        create: impl FnOnce() -> Stream,
        attach: impl FnOnce(&Arc<Stream>) -> T,
    ) -> (Arc<Stream>, bool, T) {
        let mut streams = self.lock();
        let (stream, created) = if let Some(stream) = streams.get(key) {
            (Arc::clone(stream), false)
        } else {
            let stream = Arc::new(create());
            streams.insert(key.to_owned(), Arc::clone(&stream));
            metrics::streams(streams.len());
            (stream, true)
        };
        let attached = attach(&stream);
        (stream, created, attached)
    }

    /// Removes `stream` if it still has no client; `true` if removed.
    pub(crate) fn remove_if_idle(&self, stream: &Arc<Stream>) -> bool {
        let mut streams = self.lock();
        if stream.clients() > 0 {
            return false;
        }
        if streams
            .get(&stream.key)
            .is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            streams.remove(&stream.key);
        }
        metrics::streams(streams.len());
        true
    }

    /// Every stream now.
    pub(crate) fn all(&self) -> Vec<Arc<Stream>> {
        self.lock().values().cloned().collect()
    }
}
