//! The machine: the file-descriptor limit, processes' memory from `/proc`, what the report
//! says about the host, and the signals that end the bench early.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};
use rlimit::Resource;

/// The limit asked for: 10,000 connections and nginx's `worker_rlimit_nofile` fit with room.
const WANTED_FILES: u64 = 65_536;

/// Raises this process's `RLIMIT_NOFILE` (children inherit it) and returns the soft limit.
///
/// # Errors
/// The limit stays below `needed`.
pub(crate) fn raise_file_limit(needed: u64) -> anyhow::Result<u64> {
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE)?;
    if soft < WANTED_FILES
        && rlimit::setrlimit(Resource::NOFILE, WANTED_FILES, hard.max(WANTED_FILES)).is_err()
    {
        // Not root: as far as the hard limit goes.
        rlimit::setrlimit(Resource::NOFILE, hard.min(WANTED_FILES), hard)?;
    }
    let (soft, _) = rlimit::getrlimit(Resource::NOFILE)?;
    ensure!(
        soft >= needed,
        "the open-file limit is {soft}, and {needed} connections need more: raise it \
         (`ulimit -n {needed}`, as root or within the hard limit) and run again"
    );
    Ok(soft)
}

/// Resident memory of a process (`VmRSS` of `/proc/<pid>/status`), in bytes.
pub(crate) fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))?;
    Ok(kib * 1024)
}

/// CPU time a process (all its threads) or one thread has used, in clock ticks (`USER_HZ`,
/// 100 a second on Linux), from a `/proc/.../stat` file.
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // After `comm`: state (3) ... utime (14), stime (15), counted from 1 with pid and comm.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks a second in `/proc` (`USER_HZ`, fixed by the kernel's ABI).
pub(crate) const TICKS_PER_SEC: f64 = 100.0;

/// The name prefix of this process's threads that serve rather than load (their CPU time is
/// the server's).
pub(crate) const SERVER_THREAD: &str = "srv-";

/// CPU time used so far by processes, this process's threads and the whole machine.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSample {
    /// The server processes.
    pub(crate) server: u64,
    /// This process, but for its server-side threads.
    pub(crate) client: u64,
    /// This process's server-side threads: nchan's publisher.
    pub(crate) publisher: u64,
    /// Every CPU of the machine, busy.
    pub(crate) machine: u64,
}

impl CpuSample {
    pub(crate) fn take(server_pids: &[u32]) -> Self {
        let server = server_pids
            .iter()
            .filter_map(|pid| stat_ticks(&format!("/proc/{pid}/stat")))
            .sum();
        let publisher = std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.starts_with(SERVER_THREAD))
            })
            .filter_map(|task| stat_ticks(&task.path().join("stat").to_string_lossy()))
            .sum();
        let client = stat_ticks("/proc/self/stat")
            .unwrap_or(0)
            .saturating_sub(publisher);
        // `cpu  user nice system idle iowait irq softirq steal ...`
        let machine = std::fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .next()
            .map_or(0, |line| {
                line.split_whitespace()
                    .skip(1)
                    .take(8)
                    .enumerate()
                    .filter(|&(i, _)| i != 3 && i != 4)
                    .filter_map(|(_, n)| n.parse::<u64>().ok())
                    .sum()
            });
        Self {
            server,
            client,
            publisher,
            machine,
        }
    }

    /// CPU used from `self` to `later`, in cores over `secs`.
    pub(crate) fn cores_until(&self, later: &Self, secs: f64) -> CpuUse {
        let cores = |a: u64, b: u64| b.saturating_sub(a) as f64 / TICKS_PER_SEC / secs;
        let server = cores(self.server, later.server);
        let client = cores(self.client, later.client);
        let publisher = cores(self.publisher, later.publisher);
        let machine = cores(self.machine, later.machine);
        CpuUse {
            server,
            client,
            publisher,
            other: (machine - server - client - publisher).max(0.0),
        }
    }
}

/// CPU used over a window, in cores.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUse {
    pub(crate) server: f64,
    pub(crate) client: f64,
    pub(crate) publisher: f64,
    /// Everything else on the machine (other processes, the kernel's own threads).
    pub(crate) other: f64,
}

/// The processes whose parent is `pid` (nginx's workers).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| parent(child) == Some(pid))
        .collect()
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// One line about the host: CPUs, model, kernel, memory, load.
pub(crate) fn host() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(String::new, |kib| {
            format!(", {} GiB RAM", kib / (1024 * 1024))
        });
    format!(
        "{cpus} CPUs ({model}){memory}, Linux {}, {}",
        kernel.trim(),
        std::env::consts::ARCH
    )
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Resolves a relative path against the workspace root.
pub(crate) fn in_workspace(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        session_tests::moto::repo_root().join(path)
    }
}

/// A directory of its own under the system's temporary directory, removed when dropped.
#[derive(Debug)]
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("fanout-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Resolves on Ctrl-C or SIGTERM, naming it.
pub(crate) async fn interrupted() -> &'static str {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}
