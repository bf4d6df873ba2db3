//! moto's DynamoDB-API server, started once per test binary on a free loopback port.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A running moto server. It exits when this process exits: it reads our end of its stdin.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
    _child: Child,
}

/// The repository's root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn python() -> PathBuf {
    std::env::var_os("MOTO_PYTHON")
        .map_or_else(|| repo_root().join(".venv/bin/python"), PathBuf::from)
}

const INSTALL_HINT: &str = "moto's server is needed for the DynamoDB tests: run `scripts/test.sh` \
     (it installs moto into .venv), or `python3 -m venv .venv && .venv/bin/pip install 'moto[server]'`, \
     or point MOTO_PYTHON at a python that has moto[server]";

impl Moto {
    /// The shared server of this test binary, started on first use.
    ///
    /// # Panics
    /// moto is not installed or does not start; the message says how to install it.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(|| Moto::start().unwrap_or_else(|e| panic!("{e}\n{INSTALL_HINT}")))
    }

    fn start() -> Result<Moto, String> {
        let python = python();
        let script = repo_root().join("scripts/moto_server.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("moto server did not start: {e}"))?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("moto server did not start (it printed {line:?})"))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        // Said on the real stderr, past the test harness's capture, so every run shows it.
        let _ = writeln!(
            std::io::stderr(),
            "DynamoDB tests run against a real moto server at {endpoint} ({})",
            python.display()
        );
        Ok(Moto {
            endpoint,
            _child: child,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A Secrets Manager client of this server that names no component: the tests' own calls
    /// (putting secrets) are not the service's, so the permission check does not hold them
    /// against a role.
    pub fn secrets_admin(&self) -> aws_sdk_secretsmanager::Client {
        use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(&self.endpoint)
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    /// The ARN of a new secret holding `value`, named `<kind>-<ulid>`: the permission check
    /// maps a secret to the template's by that kind (`edge-origin`, `backend-tls-key`, ...).
    ///
    /// # Panics
    /// The server refuses it.
    pub async fn create_secret(&self, kind: &str, value: &str) -> String {
        let created = self
            .secrets_admin()
            .create_secret()
            .name(format!("{kind}-{}", ulid::Ulid::new()))
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto refused a secret: {e:?}"));
        created.arn.unwrap_or_default()
    }
}
