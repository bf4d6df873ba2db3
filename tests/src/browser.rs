//! Headless Chromium through chromedriver (fantoccini, WebDriver over plain HTTP on loopback),
//! for the tests of what a person sees: the web page's walk-through and the traces it starts.
//!
//! Chromium and chromedriver are Debian packages (`chromium`, `chromium-driver`); scripts/test.sh
//! installs them. Without them a browser test fails and says how to install them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The flags that let headless Chromium run as root on a machine without a network: no
/// sandbox, no GPU, no QUIC, none of the background requests a closed network refuses, and no
/// reliance on a large /dev/shm (containers often have 64 MB).
const CHROMIUM_FLAGS: [&str; 11] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1480,1050",
    "--hide-scrollbars",
];

/// A chromedriver process started by a test, in a process group of its own so that the
/// Chromium it starts ends with it even when the test fails half-way.
#[derive(Debug)]
pub struct Chromedriver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver on a free loopback port; fails saying what to install without it.
    pub async fn start() -> Result<Self> {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            ensure!(
                Path::new(binary).exists(),
                "{binary} is missing: the web page test drives headless Chromium through \
                 chromedriver; install them with `apt-get install chromium chromium-driver` \
                 (scripts/test.sh does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let profile = std::env::temp_dir().join(format!("web-test-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&profile)?;
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!(
                    "--log-path={}",
                    profile.join("chromedriver.log").display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .context("starting chromedriver")?
        };
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
        };
        let status = format!("{}/status", driver.url);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(answer) = http.get(&status).send().await
                && let Ok(body) = answer.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return Ok(driver);
            }
            ensure!(
                Instant::now() < deadline,
                "chromedriver did not get ready in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A fresh headless Chromium with a profile of its own.
    pub async fn browser(&self) -> Result<Client> {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|&f| f.to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            self.profile.join("chromium").display()
        ));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        tokio::time::timeout(Duration::from_secs(60), builder.connect(&self.url))
            .await
            .context("headless Chromium did not start within 60 s")?
            .context("starting headless Chromium through chromedriver")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The group is chromedriver's own (`process_group(0)`): its id is chromedriver's.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
