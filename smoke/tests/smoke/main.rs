//! The `smoke` binary against the local stack, started in-process on free ports and writing its
//! endpoints file as `session-local --endpoints-file` does: every step passes; a part that is
//! down or misdescribed fails the run at the step that needs it, and what the run created is
//! closed. Plus the TLS path (https:// and wss://) through a TLS-terminating proxy.

#![allow(unreachable_pub, clippy::unwrap_used)]

mod helpers;
mod runs;
mod tls;
