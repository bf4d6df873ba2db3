//! The local stack's web page in a real browser, on two regions (`--regions 2`): it shows the
//! region it talks to and the session's home, and when its region fails it follows the
//! documented client path (`docs/multi-region.md`, "What a client does when its region fails")
//! to the region that took the session over, where it streams again after an explicit `reset`.
//! Over plain HTTP: every region's page is told of every region, and every region's HTTP API and
//! streamer allow every region's page.
//!
//! Chromium and chromedriver are Debian packages (`chromium`, `chromium-driver`); see
//! `session_tests::browser`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use fantoccini::Client;
use reqwest::StatusCode;
use serde_json::Value;
use session_local::regions::Regions;
use session_tests::browser::{Chromedriver, Shown, click, start_simulator_as, until};

/// The replication lag between the regions.
const LAG: Duration = Duration::from_millis(200);

/// The stream is open and delivered at least `events` events, with books and trades.
fn streaming(now: &Shown, events: u64) -> bool {
    now.text("state") == "open"
        && now.number("events") >= events
        && !now.value["books"]
            .as_object()
            .is_none_or(serde_json::Map::is_empty)
        && now.count("trades") > 0
}

/// The operator, through `local-b`'s API: `POST /_local/regions/local-a/{action}`.
async fn operator(regions: &Regions, action: &str) -> Result<Value> {
    let url = format!(
        "{}/_local/regions/local-a/{action}",
        regions.endpoints()[1].http_api
    );
    let response = reqwest::Client::new().post(url).send().await?;
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    ensure!(status == StatusCode::OK, "{action}: {status} {body}");
    Ok(body)
}

/// A person streams a session from `local-a`'s page; the region fails and is failed over.
async fn fail_over_under_the_page(page: &Client, regions: &Regions) -> Result<()> {
    page.goto(&regions.endpoints()[0].web).await?;
    let ready = until(page, "the config read", |now| now.value["ready"] == true).await?;
    ensure!(ready.text("region") == "local-a", "{ready:#?}");

    start_simulator_as(page, "alice", 40).await?;
    click(page, "connect").await?;
    // The home comes from `X-Session-Home`, which the API exposes to the page (CORS).
    let before = until(page, "a stream from local-a, homed there", |now| {
        streaming(now, 20) && now.text("home") == "local-a; epoch=1"
    })
    .await?;
    // Acknowledged writes in local-a replicate before the failure.
    tokio::time::sleep(LAG * 3).await;

    let failed = operator(regions, "fail").await?;
    ensure!(failed["stopped"] == true, "{failed}");
    let moved = operator(regions, "failover?to=local-b").await?;
    ensure!(moved["summary"]["failed_simulators"] == 1, "{moved}");

    let after = until(page, "the stream from local-b after a reset", |now| {
        now.text("region") == "local-b"
            && now.notices_with("Reset (epoch_changed)") == 1
            && now.notices_with("homed in local-b") == 1
            && streaming(now, before.number("events") + 40)
    })
    .await?;
    ensure!(after.number("resets") == 1, "{after:#?}");
    ensure!(
        after.number("gaps") == 0,
        "a gap across the failover: {after:#?}"
    );
    let home = until(
        page,
        "the session's new home, its simulator restarted",
        |now| now.text("home") == "local-b; epoch=2" && now.text("simulator") == "running",
    )
    .await?;
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-page-failover.png");
    std::fs::write(&path, page.screenshot().await?)?;
    eprintln!("screenshot: {}", path.display());
    eprintln!(
        "the page followed the failover: {} events, resets {}, gaps {}",
        home.text("events"),
        home.text("resets"),
        home.text("gaps")
    );
    Ok(())
}

async fn two_regions() -> Regions {
    session_tests::regions::two_local_regions(LAG, None).await
}

#[tokio::test]
async fn every_regions_page_knows_every_region_and_every_regions_apis_allow_it() -> Result<()> {
    let regions = two_regions().await;
    let endpoints = regions.endpoints().to_vec();
    let http = reqwest::Client::new();

    let mut configs = Vec::new();
    for region in &endpoints {
        let url = format!("{}/config.json", region.web);
        configs.push(http.get(url).send().await?.json::<Value>().await?);
    }
    // Each page's origin, at every region's HTTP API (preflight) and streamer (preflight).
    let mut allowed = Vec::new();
    for page in &endpoints {
        for api in &endpoints {
            let preflight = |url: String, method: &str| {
                http.request(reqwest::Method::OPTIONS, url)
                    .header("origin", &page.web)
                    .header("access-control-request-method", method)
                    .send()
            };
            let rest = preflight(format!("{}/v1/sessions", api.http_api), "POST").await?;
            let stream = format!(
                "{}/v1/sessions/ses_01JG7Q3ZKXW4T9M2R8V6C5N1HA/stream",
                api.sse
            );
            let sse = preflight(stream, "GET").await?;
            for answer in [rest, sse] {
                allowed.push((
                    page.name.clone(),
                    answer.url().to_string(),
                    answer.headers().get("access-control-allow-origin").cloned(),
                ));
            }
        }
    }
    regions.shutdown().await?;

    let listed = serde_json::to_value(&endpoints)?;
    for (config, region) in configs.iter().zip(&endpoints) {
        assert_eq!(config["region"], region.name.as_str(), "{config}");
        assert_eq!(config["http_api"], region.http_api.as_str(), "{config}");
        assert_eq!(config["regions"], listed, "{config}");
    }
    for (page, url, origin) in &allowed {
        let web = &endpoints.iter().find(|r| &r.name == page).unwrap().web;
        assert_eq!(
            origin.as_ref().and_then(|o| o.to_str().ok()),
            Some(web.as_str()),
            "{page}'s page at {url}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_its_region_and_follows_a_failover_to_the_next_after_an_explicit_reset()
-> Result<()> {
    let regions = two_regions().await;
    let driver = Chromedriver::start().await?;
    let page = driver.browser().await?;

    let followed = tokio::time::timeout(
        Duration::from_secs(120),
        fail_over_under_the_page(&page, &regions),
    )
    .await;

    let _ = page.close().await;
    drop(driver);
    regions.shutdown().await?;
    followed.context("the failover under the page took over 120 s")??;
    Ok(())
}
