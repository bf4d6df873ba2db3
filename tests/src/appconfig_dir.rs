//! A folder the local stack serves as the AppConfig Agent's API (`appconfig_dir`), and the
//! writes tests make to it: a document is written beside and renamed, so the agent never
//! serves a half-written file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A temporary folder of AppConfig documents, removed when dropped.
#[derive(Debug)]
pub struct AppConfigDir {
    path: PathBuf,
}

impl AppConfigDir {
    /// An empty folder (every profile served from the stack's built-in defaults).
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("appconfig-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&path).expect("a temporary folder");
        Self { path }
    }

    /// Its path (`StackSettings::appconfig_dir`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces `profile`'s document with `text`.
    pub fn write(&self, profile: &str, text: &str) {
        let staged = self.path.join(format!("{profile}.json.new"));
        std::fs::write(&staged, text).expect("the document is written");
        std::fs::rename(staged, self.path.join(format!("{profile}.json")))
            .expect("the document is renamed into place");
    }
}

impl Default for AppConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for AppConfigDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.path).ok();
    }
}

/// The value of the counter line of Prometheus `text` that starts with `series` (name and
/// labels as rendered, e.g. `appconfig_refresh_failures_total{profile="settings",reason="invalid"}`),
/// 0 when absent.
pub fn counter(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Retries `attempt` every 50 ms until it gives `Some`, for at most `patience`.
///
/// # Panics
/// It never does: `what` names what was awaited.
pub async fn eventually<T, F>(patience: Duration, what: &str, mut attempt: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "not seen in {patience:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
