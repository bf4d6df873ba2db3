//! Progress of `migrate up`: on a terminal, a bar per migration (items scanned, their rate,
//! items changed: a scan cannot know the table's size in advance); otherwise one plain line per
//! page on stderr, for logs.

use std::io::{IsTerminal as _, Write as _};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use session_core::store::migrate::PageProgress;

/// Where progress goes.
#[derive(Debug)]
pub(super) enum Progress {
    /// A bar on the terminal: the migration it shows, and the bar.
    Bar(Option<(u32, ProgressBar)>),
    /// Plain lines on stderr.
    Lines,
}

impl Progress {
    /// A bar if stderr is a terminal, else plain lines.
    pub(super) fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar(None)
        } else {
            Self::Lines
        }
    }

    /// Shows one page's progress.
    pub(super) fn page(&mut self, page: &PageProgress) {
        match self {
            Self::Lines => {
                // Progress is best effort: a closed stderr does not stop the migration.
                let _ = writeln!(
                    std::io::stderr(),
                    "migration {} ({}): page of {} scanned, {} selected, {} changed; \
                     {} scanned and {} changed so far",
                    page.version,
                    page.name,
                    page.scanned,
                    page.selected,
                    page.changed,
                    page.total_scanned,
                    page.total_changed
                );
            }
            Self::Bar(current) => {
                if current.as_ref().is_none_or(|(v, _)| *v != page.version) {
                    if let Some((_, done)) = current.take() {
                        finished(&done);
                    }
                    *current = Some((page.version, bar(page)));
                }
                if let Some((_, bar)) = current {
                    bar.set_position(page.total_scanned);
                    bar.set_message(format!("{} changed", page.total_changed));
                }
            }
        }
    }

    /// Replaces the last bar by its summary line.
    pub(super) fn finish(self) {
        if let Self::Bar(Some((_, bar))) = self {
            finished(&bar);
        }
    }
}

/// Replaces `bar` by a line saying how its migration went.
fn finished(bar: &ProgressBar) {
    bar.finish_and_clear();
    let _ = writeln!(
        std::io::stderr(),
        "migration {}: {} items scanned, {} in {:.1?}",
        bar.prefix(),
        bar.position(),
        bar.message(),
        bar.elapsed()
    );
}

fn bar(page: &PageProgress) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} migration {prefix}: {human_pos} items scanned ({rate}), {msg} \
             [{elapsed_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        ),
    );
    bar.set_prefix(format!("{} ({})", page.version, page.name));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
