//! The two binaries as processes: they serve on the address they are given (port 0 here, the
//! bound address read from their logs), and the simulator stops cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use session_proto::auth::v1 as auth_pb;
use session_proto::auth::v1::auth_service_client::AuthServiceClient;
use session_proto::auth::v1::validate_token_response::Result as Verdict;
use session_proto::simulator::v1::simulator_control_client::SimulatorControlClient;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{WAIT_TIMEOUT, start_request, within};

/// Starts `binary` with `args`, logs without colours, killed if the test ends first.
fn spawn(binary: &str, args: &[&str]) -> Child {
    Command::new(binary)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts")
}

/// Reads log lines until the "listening" one; returns the address it names.
async fn listening_address<R: AsyncRead + Unpin>(logs: &mut Lines<BufReader<R>>) -> String {
    within(WAIT_TIMEOUT, "the listening log line", async {
        loop {
            let line = logs
                .next_line()
                .await
                .expect("readable logs")
                .expect("the process logs where it listens before anything else ends");
            if !line.contains("listening") {
                continue;
            }
            let at = line.find("127.0.0.1:").expect("the line names the address");
            let port: String = line[at + "127.0.0.1:".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            return format!("http://127.0.0.1:{port}");
        }
    })
    .await
}

/// Sends SIGTERM, as a supervisor (systemd, Kubernetes) stops a process.
async fn terminate(process: &Child) {
    let pid = process.id().expect("running").to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(signalled.success());
}

async fn connect(address: String) -> Channel {
    Endpoint::from_shared(address)
        .expect("an http URL")
        .connect()
        .await
        .expect("the binary accepts connections")
}

async fn assert_serving(channel: Channel) {
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the health service answers")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
}

#[tokio::test]
async fn the_exchange_simulator_binary_serves_grpc_and_stops_cleanly_on_sigterm() {
    // Arrange
    let mut process = spawn(
        env!("CARGO_BIN_EXE_exchange-simulator"),
        &["--listen", "127.0.0.1:0"],
    );
    let mut logs = BufReader::new(process.stdout.take().unwrap()).lines();
    let channel = connect(listening_address(&mut logs).await).await;

    // Act and Assert: health, and an instance started over its control API.
    assert_serving(channel.clone()).await;
    let info = SimulatorControlClient::new(channel)
        .start(start_request(&["BTC-USD"], 1, 100))
        .await
        .expect("start succeeds")
        .into_inner();
    assert!(info.simulator_id.starts_with("sim_"));

    // SIGTERM stops it cleanly: exit status 0.
    terminate(&process).await;
    // Keep reading the logs so that the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
    let status = within(WAIT_TIMEOUT, "the process exiting", process.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_auth_service_binary_prints_the_tokens_and_jwks_asked_for_and_validates_them() {
    // Arrange
    let mut process = spawn(
        env!("CARGO_BIN_EXE_auth-service"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--token",
            "alice:sessions:read,sessions:write",
            "--print-jwks",
        ],
    );
    let mut output = BufReader::new(process.stdout.take().unwrap()).lines();
    let mut logs = BufReader::new(process.stderr.take().unwrap()).lines();
    let line = within(WAIT_TIMEOUT, "the token line", output.next_line())
        .await
        .unwrap()
        .expect("a token line");
    let (subject, token) = line.split_once(' ').expect("SUBJECT TOKEN");
    let jwks = within(WAIT_TIMEOUT, "the JWKS line", output.next_line())
        .await
        .unwrap()
        .expect("a JWKS line");
    let jwks: serde_json::Value = serde_json::from_str(&jwks).expect("the JWKS is JSON");
    let channel = connect(listening_address(&mut logs).await).await;

    // Act
    assert_serving(channel.clone()).await;
    let verdict = AuthServiceClient::new(channel)
        .validate_token(auth_pb::ValidateTokenRequest {
            token: token.to_owned(),
            audience: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .result;

    // Assert
    assert_eq!(subject, "alice");
    let Some(Verdict::Valid(valid)) = verdict else {
        panic!("the printed token is valid: {verdict:?}");
    };
    assert_eq!(valid.subject, "alice");
    assert_eq!(valid.scopes, ["sessions:read", "sessions:write"]);
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
}

#[tokio::test]
async fn the_local_stack_binary_writes_its_endpoints_once_ready_and_stops_within_seconds_on_sigterm()
 {
    // Arrange: every part on a free port, as `scripts/api-fuzz.sh` starts it.
    let dir = std::env::temp_dir().join(format!("session-local-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let endpoints_file = dir.join("endpoints.json");
    let any = "127.0.0.1:0";
    let mut process = spawn(
        env!("CARGO_BIN_EXE_session-local"),
        &[
            "--http-api",
            any,
            "--ws-api",
            any,
            "--sse",
            any,
            "--web",
            any,
            "--simulator",
            any,
            "--auth",
            any,
            "--appconfig",
            any,
            "--endpoints-file",
            endpoints_file.to_str().unwrap(),
        ],
    );
    let mut logs = BufReader::new(process.stdout.take().unwrap()).lines();
    tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
    let endpoints: serde_json::Value = within(WAIT_TIMEOUT, "the endpoints file", async {
        loop {
            if let Ok(text) = std::fs::read_to_string(&endpoints_file) {
                return serde_json::from_str(&text).expect("the endpoints file is JSON");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Act and Assert: once the file is there, every HTTP part answers.
    for key in [
        "http_api",
        "ws_api",
        "sse",
        "web",
        "token_url",
        "connections_url",
        "auth_grpc",
        "simulator_grpc",
        "appconfig",
    ] {
        assert!(endpoints[key].is_string(), "{key} in {endpoints}");
    }
    for (key, path) in [
        ("http_api", "/v1/health"),
        ("sse", "/health/ready"),
        ("web", "/"),
        (
            "appconfig",
            "/applications/any/environments/any/configurations/flags",
        ),
    ] {
        let url = format!("{}{path}", endpoints[key].as_str().unwrap());
        let status = reqwest::get(&url).await.expect("it answers").status();
        assert_eq!(status, 200, "{url}");
    }
    let token = reqwest::Client::new()
        .post(endpoints["token_url"].as_str().unwrap())
        .json(&serde_json::json!({ "sub": "alice" }))
        .send()
        .await
        .unwrap();
    assert!(token.status().is_success(), "{}", token.status());

    // SIGTERM: everything stops, exit status 0, within a few seconds.
    terminate(&process).await;
    let status = within(Duration::from_secs(10), "the stack exiting", process.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_binaries_refuse_unknown_flags_with_exit_status_2_and_print_usage_on_help() {
    for binary in [
        env!("CARGO_BIN_EXE_exchange-simulator"),
        env!("CARGO_BIN_EXE_auth-service"),
    ] {
        let refused = within(
            Duration::from_secs(30),
            "the process exiting",
            spawn(binary, &["--no-such-flag"]).wait_with_output(),
        )
        .await
        .unwrap();
        assert_eq!(refused.status.code(), Some(2), "{binary}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("--no-such-flag"));
        let help = within(
            Duration::from_secs(30),
            "the process exiting",
            spawn(binary, &["--help"]).wait_with_output(),
        )
        .await
        .unwrap();
        assert!(help.status.success(), "{binary}");
        assert!(String::from_utf8_lossy(&help.stdout).contains("Usage:"));
    }
}

#[tokio::test]
async fn ticket_keys_prints_a_pair_the_service_loads_as_its_signing_and_verify_keys() {
    let printed = Command::new(env!("CARGO_BIN_EXE_session-local"))
        .args(["ticket-keys", "--kid", "2026-12"])
        .output()
        .await
        .expect("the binary runs");
    let no_kid = Command::new(env!("CARGO_BIN_EXE_session-local"))
        .arg("ticket-keys")
        .output()
        .await
        .expect("the binary runs");

    assert!(printed.status.success(), "{printed:?}");
    let keys: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    let dir = std::env::temp_dir().join(format!("ticket-keys-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (signing, verify) = (dir.join("signing.json"), dir.join("verify.json"));
    std::fs::write(&signing, keys["signing_key"].to_string()).unwrap();
    std::fs::write(&verify, keys["verify_keys"].to_string()).unwrap();
    let figment = figment::Figment::new()
        .merge(("auth.ticket_signing_key_file", &signing))
        .merge(("auth.ticket_verify_keys_file", &verify));
    // Loading checks that the public half published is the signing key's.
    let settings = session_core::config::Settings::from_figment(&figment).unwrap();
    assert_eq!(settings.auth.ticket_signing_key().unwrap().kid(), "2026-12");
    assert_eq!(
        settings
            .auth
            .ticket_verify_keys()
            .unwrap()
            .kids()
            .collect::<Vec<_>>(),
        ["2026-12"]
    );
    assert_eq!(no_kid.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_kid.stderr).contains("--kid"));
}
