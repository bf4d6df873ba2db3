//! `session-load` as a process against the local stack started in-process on free ports (with
//! its endpoints file, as `session-local --endpoints-file` writes it).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use session_core::config::Settings;
use session_local::stack::{Stack, StackSettings};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("session-load-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

async fn load(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_session-load"))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("session-load ends in time")
        .expect("session-load runs")
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The figures of `row` in `table`: its cells after the name.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|line| line.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no row {name:?} in\n{table}"));
    line.split('|').map(str::trim).skip(2).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_against_the_local_stack_reports_every_row_without_errors_gaps_or_duplicates() {
    let dir = scratch("run");
    let endpoints = dir.join("endpoints.json");
    let mut service = Settings::default();
    service.backends.retry_base_ms = Duration::from_millis(5);
    let mut settings = StackSettings {
        endpoints_file: Some(endpoints.clone()),
        ..StackSettings::ephemeral(service)
    };
    // An idle stream goes after a second instead of 30: the test sees every stream go.
    settings.streamer.linger_secs = Duration::from_secs(1);
    let stack = Stack::start(settings)
        .await
        .expect("the local stack starts");
    let (report, plot) = (dir.join("load.md"), dir.join("load.svg"));

    let output = load(&[
        "--endpoints",
        endpoints.to_str().unwrap(),
        "--duration=6s",
        "--sessions=2",
        "--sse=3",
        "--ws=3",
        "--ops-rate=2",
        "--heartbeat-every=1s",
        "--storm-every=2s",
        "--storm-fraction=0.5",
        "--report",
        report.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ])
    .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let table = text(&report);
    assert!(String::from_utf8_lossy(&output.stdout).contains(&table));
    for name in [
        "create session",
        "start simulator",
        "simulator status",
        "stop simulator",
        "delete session",
        "SSE connect",
        "WebSocket connect",
        "SSE events",
        "WebSocket events",
        "WebSocket heartbeat",
    ] {
        let cells = row(&table, name);
        let count: u64 = cells[0].parse().expect("a count");
        assert!(count > 0, "nothing counted for {name}:\n{table}");
        assert_eq!(cells[6], "0", "errors in {name}:\n{table}");
    }
    // Storms made clients reconnect (with resume) beyond their first connection.
    let connects: u64 = ["SSE connect", "WebSocket connect"]
        .iter()
        .map(|name| row(&table, name)[0].parse::<u64>().unwrap())
        .sum();
    assert!(connects > 6, "no reconnect in a storm:\n{table}");
    for name in ["SSE events", "WebSocket events"] {
        let cells = row(&table, name);
        assert_eq!((cells[7], cells[8]), ("0", "0"), "{name}:\n{table}");
    }
    let svg = text(&plot);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
    // Every client left and every session closed: the streamer's streams (windows, books) and
    // the emulator's connections are all gone once the streams' linger ends.
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = stack.streamer_hub().streams().len() + stack.ws_api().connection_ids().len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "streams or connections left after the run");
    stack.shutdown().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_churn_soak_reads_memory_after_each_wave_once_the_streamer_holds_nothing_of_it() {
    let dir = scratch("churn");
    let endpoints = dir.join("endpoints.json");
    let mut settings = StackSettings {
        endpoints_file: Some(endpoints.clone()),
        ..StackSettings::ephemeral(Settings::default())
    };
    // A closed stream goes about two lingers after its simulator stopped: 2 s here, well inside
    // the 5 s settle. At most one stopped simulator kept, of the three the waves stop.
    settings.streamer.linger_secs = Duration::from_secs(1);
    settings.simulators.max_stopped_instances = 1;
    let stack = Stack::start(settings)
        .await
        .expect("the local stack starts");
    let (report, plot) = (dir.join("churn.md"), dir.join("churn.svg"));
    // The stack runs in this process: its resident memory is this process's.
    let pid = std::process::id().to_string();

    let output = load(&[
        "--endpoints",
        endpoints.to_str().unwrap(),
        "--mode=churn",
        "--duration=20s",
        "--wave=1s",
        "--settle=5s",
        "--sessions=1",
        "--sse=2",
        "--ws=1",
        "--memory-pid",
        &pid,
        "--report",
        report.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ])
    .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let table = text(&report);
    // A row per wave after the one before the first: resident memory, and the streamer
    // holding no stream and no window once the wave settled.
    let waves: Vec<Vec<&str>> = table
        .lines()
        .skip_while(|line| !line.starts_with("| after wave |"))
        .skip(2)
        .map(|line| line.split('|').map(str::trim).skip(1).collect())
        .collect();
    assert!(waves.len() >= 3, "{table}");
    for cells in &waves[1..] {
        assert!(cells[2].parse::<f64>().unwrap() > 0.0, "{table}");
        assert_eq!((cells[3], cells[4]), ("0", "0.0"), "{table}");
    }
    // Every wave stopped its simulator; the registry kept only the newest.
    assert_eq!(stack.simulator().simulators().counts(), (1, 1));
    stack.shutdown().await.expect("a clean stop");
}

#[tokio::test]
async fn a_bad_endpoints_file_is_refused_naming_the_file_and_the_key() {
    let dir = scratch("bad");
    let missing = dir.join("missing.json");
    std::fs::write(&missing, r#"{"sse": "http://127.0.0.1:1"}"#).unwrap();
    let no_token = dir.join("no-token.json");
    std::fs::write(&no_token, r#"{"http_api": "http://127.0.0.1:1"}"#).unwrap();
    let cases = [
        (
            missing.clone(),
            format!(r#"missing key "http_api" in {}"#, missing.display()),
        ),
        (
            dir.join("absent.json"),
            format!("cannot read {}", dir.join("absent.json").display()),
        ),
        (
            no_token.clone(),
            format!(
                r#"give --token (or SESSION_LOAD_TOKEN), or a "token_url" in {}"#,
                no_token.display()
            ),
        ),
    ];
    for (file, reason) in cases {
        let output = load(&["--endpoints", file.to_str().unwrap(), "--duration=1s"]).await;

        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&reason), "{reason:?} not in {stderr}");
    }
}
