//! The cache's counters (declared in `crate::metrics_catalog`): a no-op where no recorder is
//! installed.

/// A read `tier` (`local`, `redis`) answered.
pub(super) fn hit(tier: &'static str) {
    metrics::counter!("cache_requests_total", "tier" => tier, "result" => "hit").increment(1);
}

/// A read `tier` could not answer.
pub(super) fn miss(tier: &'static str) {
    metrics::counter!("cache_requests_total", "tier" => tier, "result" => "miss").increment(1);
}

/// A call the shared tier was skipped for, paused after a failure.
pub(super) fn skipped() {
    metrics::counter!("cache_requests_total", "tier" => "redis", "result" => "skipped")
        .increment(1);
}

/// A shared-tier `operation` that failed or timed out.
pub(super) fn error(operation: &'static str) {
    metrics::counter!("cache_errors_total", "tier" => "redis", "operation" => operation)
        .increment(1);
}
