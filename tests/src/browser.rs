//! Headless Chromium through chromedriver (fantoccini, WebDriver over plain HTTP on loopback),
//! for the tests of what a person sees: the web page's walk-through and the traces it starts,
//! and the few steps they take on the page (read what it shows, wait for it, click, type).
//!
//! Chromium and chromedriver are Debian packages (`chromium`, `chromium-driver`); scripts/test.sh
//! installs them. Without them a browser test fails and says how to install them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use fantoccini::{Client, ClientBuilder, Locator};
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

/// How long the page may take to show what a step waits for.
pub const STEP: Duration = Duration::from_secs(20);

/// What the page shows, read from its elements.
#[derive(Debug, Clone)]
pub struct Shown {
    /// What the page's elements say, by field.
    pub value: Value,
}

impl Shown {
    /// See [`READ_PAGE`]'s fields.
    pub fn text(&self, field: &str) -> &str {
        self.value[field].as_str().unwrap_or_default()
    }

    /// See [`READ_PAGE`]'s fields.
    pub fn number(&self, field: &str) -> u64 {
        self.text(field).trim().parse().unwrap_or(0)
    }

    /// See [`READ_PAGE`]'s fields.
    pub fn count(&self, field: &str) -> u64 {
        self.value[field].as_u64().unwrap_or(0)
    }

    /// See [`READ_PAGE`]'s fields.
    pub fn notices_with(&self, words: &str) -> usize {
        self.value["notices"].as_array().map_or(0, |n| {
            n.iter()
                .filter(|n| n.as_str().is_some_and(|n| n.contains(words)))
                .count()
        })
    }
}

/// The script that reads what the page shows into one object.
const READ_PAGE: &str = r#"
const text = (id) => document.getElementById(id).textContent;
const filled = (selector) =>
  [...document.querySelectorAll(selector)].filter((cell) => cell.textContent !== '').length;
const books = {};
for (const book of document.querySelectorAll('.book')) {
  books[book.dataset.symbol] = {
    bids: filled(`.book[data-symbol="${book.dataset.symbol}"] td.bid-price`),
    asks: filled(`.book[data-symbol="${book.dataset.symbol}"] td.ask-price`),
  };
}
const error = document.getElementById('error');
return {
  ready: !document.getElementById('get-token').disabled,
  region: text('region'),
  home: text('session-home'),
  state: text('stream-state'),
  transport: text('transport-name'),
  stream_url: text('stream-url'),
  token: text('token-state'),
  session: text('session-id'),
  simulator: text('simulator-status'),
  last_event_id: text('last-event-id'),
  events: text('events'),
  gaps: text('gaps'),
  duplicates: text('duplicates'),
  resumes: text('resumes'),
  resets: text('resets'),
  rtt: text('rtt'),
  trace: text('trace-id'),
  heartbeats: text('heartbeats'),
  books,
  trades: document.querySelectorAll('#trade-rows tr').length,
  notices: [...document.querySelectorAll('#notices li')].map((li) => li.textContent),
  error: error.hidden ? '' : error.textContent,
};
"#;

/// What the page shows now.
///
/// # Errors
/// The browser did not answer.
pub async fn shown(page: &Client) -> Result<Shown> {
    let value = page.execute(READ_PAGE, vec![]).await?;
    Ok(Shown { value })
}

/// Waits until the page shows what `done` looks for; fails with what it showed last.
///
/// # Errors
/// The page showed an error, or not what `done` wants within [`STEP`].
pub async fn until(page: &Client, what: &str, done: impl Fn(&Shown) -> bool) -> Result<Shown> {
    let deadline = Instant::now() + STEP;
    loop {
        let now = shown(page).await?;
        if done(&now) {
            return Ok(now);
        }
        ensure!(
            now.text("error").is_empty(),
            "the page shows an error while waiting for {what}: {now:#?}"
        );
        if Instant::now() > deadline {
            bail!("the page did not show {what} within {STEP:?}; it shows {now:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the element with id `id`.
///
/// # Errors
/// No such element, or the click failed.
pub async fn click(page: &Client, id: &str) -> Result<()> {
    page.find(Locator::Id(id))
        .await
        .with_context(|| format!("#{id}"))?
        .click()
        .await
        .with_context(|| format!("clicking #{id}"))
}

/// Replaces the text of the field with id `id`.
///
/// # Errors
/// No such field, or typing failed.
pub async fn type_into(page: &Client, id: &str, text: &str) -> Result<()> {
    let field = page.find(Locator::Id(id)).await?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

/// What a person does first on the page: a token for `subject`, a session, and a simulator at
/// `rate` events/s, each waited for until the page shows it.
///
/// # Errors
/// A step the page does not show in time.
pub async fn start_simulator_as(page: &Client, subject: &str, rate: u32) -> Result<()> {
    type_into(page, "subject", subject).await?;
    click(page, "get-token").await?;
    let token = format!("for {subject}");
    until(page, "a token", |now| now.text("token").starts_with(&token)).await?;
    click(page, "create-session").await?;
    until(page, "a session", |now| {
        now.text("session").starts_with("ses_")
    })
    .await?;
    type_into(page, "rate", &rate.to_string()).await?;
    click(page, "start-simulator").await?;
    until(page, "a running simulator", |now| {
        now.text("simulator") == "running"
    })
    .await?;
    Ok(())
}
