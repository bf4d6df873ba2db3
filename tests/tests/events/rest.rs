//! The HTTP API's samples: what each answers on an empty store and once seeded.

use anyhow::{Context as _, ensure};

use crate::world::{Reply, invoke, world};
use crate::{SESSION_ID, SIMULATOR_ID, load};

/// What one REST sample must answer.
pub(crate) struct RestCase {
    pub(crate) file: &'static str,
    /// Status on an empty store: what a fresh `cargo lambda watch` process answers.
    empty: u16,
    /// Status once the sample session and simulator exist.
    seeded: u16,
    /// Checks the key fields of the seeded answer.
    check: fn(&Reply) -> anyhow::Result<()>,
}

pub(crate) const REST_CASES: &[RestCase] = &[
    RestCase {
        file: "sessions-create.json",
        empty: 201,
        seeded: 201,
        check: created_session,
    },
    RestCase {
        file: "sessions-list.json",
        empty: 200,
        seeded: 200,
        check: listed_sessions,
    },
    RestCase {
        file: "sessions-get.json",
        empty: 404,
        seeded: 200,
        check: session_detail,
    },
    RestCase {
        file: "sessions-close.json",
        empty: 404,
        seeded: 200,
        check: closed_session,
    },
    RestCase {
        file: "simulators-start.json",
        empty: 404,
        seeded: 202,
        check: started_simulator,
    },
    RestCase {
        file: "simulators-get.json",
        empty: 404,
        seeded: 200,
        check: running_simulator,
    },
    RestCase {
        file: "simulators-book.json",
        empty: 404,
        seeded: 200,
        check: book,
    },
    RestCase {
        file: "simulators-stop.json",
        empty: 404,
        seeded: 200,
        check: stopped_simulator,
    },
    RestCase {
        file: "tickets-create.json",
        empty: 404,
        seeded: 201,
        check: ticket,
    },
    RestCase {
        file: "sessions-reconnect.json",
        empty: 404,
        seeded: 200,
        check: reconnect,
    },
    RestCase {
        file: "admin-revocations-create.json",
        empty: 201,
        seeded: 201,
        check: revocation,
    },
    RestCase {
        file: "health-get.json",
        empty: 200,
        seeded: 200,
        check: healthy,
    },
    RestCase {
        file: "openapi-get.json",
        empty: 200,
        seeded: 200,
        check: openapi_document,
    },
];

pub(crate) async fn run_rest(case: &RestCase) -> anyhow::Result<()> {
    let event = load(case.file)?;
    let route = event["routeKey"].as_str().unwrap_or_default().to_owned();

    let empty = invoke(&world(false).await?, event.clone()).await?;
    ensure!(
        empty.status == case.empty,
        "{route} on an empty store answered {} (expected {}): {}",
        empty.status,
        case.empty,
        empty.body
    );
    if empty.status == 404 {
        ensure!(
            empty.header("content-type") == "application/problem+json"
                && empty.str("/type") == "urn:session-service:problem:not-found",
            "{route} on an empty store: a 404 must be a not-found problem, got {:?} {}",
            empty.header("content-type"),
            empty.body
        );
    }

    let seeded = invoke(&world(true).await?, event).await?;
    ensure!(
        seeded.status == case.seeded,
        "{route} with the sample session answered {} (expected {}): {}",
        seeded.status,
        case.seeded,
        seeded.body
    );
    (case.check)(&seeded).with_context(|| format!("{route}: {}", seeded.body))
}

fn created_session(reply: &Reply) -> anyhow::Result<()> {
    let id = reply.str("/session_id");
    ensure!(
        id.starts_with("ses_") && id != SESSION_ID,
        "a new session id"
    );
    ensure!(
        reply.header("location") == format!("/v1/sessions/{id}"),
        "Location names it"
    );
    ensure!(reply.str("/status") == "active", "status active");
    ensure!(reply.str("/name") == "demo", "the name of the request");
    ensure!(
        reply.str("/metadata/desk") == "fx",
        "the metadata of the request"
    );
    Ok(())
}

pub(crate) fn listed_sessions(reply: &Reply) -> anyhow::Result<()> {
    let items = reply.body["items"].as_array().context("items")?;
    ensure!(
        items.iter().any(|s| s["session_id"] == SESSION_ID),
        "the sample session is listed"
    );
    Ok(())
}

fn session_detail(reply: &Reply) -> anyhow::Result<()> {
    ensure!(reply.str("/session_id") == SESSION_ID, "the sample session");
    ensure!(reply.str("/status") == "active", "status active");
    ensure!(
        reply.str("/simulators/0/simulator_id") == SIMULATOR_ID
            && reply.str("/simulators/0/status") == "running",
        "its running simulator"
    );
    ensure!(reply.body["connections"] == 0, "no connections");
    Ok(())
}

fn closed_session(reply: &Reply) -> anyhow::Result<()> {
    ensure!(reply.str("/session_id") == SESSION_ID, "the sample session");
    ensure!(reply.str("/status") == "closed", "status closed");
    ensure!(!reply.str("/closed_at").is_empty(), "closed_at set");
    Ok(())
}

fn started_simulator(reply: &Reply) -> anyhow::Result<()> {
    let id = reply.str("/simulator_id");
    ensure!(
        id.starts_with("sim_") && id != SIMULATOR_ID,
        "a new simulator id"
    );
    ensure!(
        reply.header("location") == format!("/v1/sessions/{SESSION_ID}/simulators/{id}"),
        "Location names it"
    );
    ensure!(reply.str("/status") == "running", "status running");
    ensure!(
        reply.body["symbols"] == serde_json::json!(["BTC-USD", "ETH-USD"]),
        "the symbols of the request"
    );
    ensure!(reply.body["seed"] == 7, "the seed of the request");
    Ok(())
}

fn running_simulator(reply: &Reply) -> anyhow::Result<()> {
    ensure!(
        reply.str("/simulator_id") == SIMULATOR_ID,
        "the sample simulator"
    );
    ensure!(reply.str("/status") == "running", "status running");
    Ok(())
}

fn book(reply: &Reply) -> anyhow::Result<()> {
    ensure!(reply.str("/symbol") == "BTC-USD", "the symbol asked for");
    let event_id = reply.str("/event_id");
    let is_event_id = event_id.split_once('-').is_some_and(|(epoch, seq)| {
        !epoch.is_empty()
            && !seq.is_empty()
            && (epoch.bytes().chain(seq.bytes())).all(|b| b.is_ascii_digit())
    });
    ensure!(
        is_event_id,
        "event_id is <epoch>-<sequence>, got {event_id:?}"
    );
    ensure!(
        reply.body["bids"].is_array() && reply.body["asks"].is_array(),
        "bids and asks"
    );
    Ok(())
}

fn stopped_simulator(reply: &Reply) -> anyhow::Result<()> {
    ensure!(
        reply.str("/simulator_id") == SIMULATOR_ID,
        "the sample simulator"
    );
    ensure!(reply.str("/status") == "stopped", "status stopped");
    Ok(())
}

fn ticket(reply: &Reply) -> anyhow::Result<()> {
    let ticket = reply.str("/ticket");
    ensure!(!ticket.is_empty(), "a ticket");
    ensure!(reply.str("/transport") == "sse", "for sse");
    let url = reply.str("/url");
    ensure!(
        url.contains(&format!("/v1/sessions/{SESSION_ID}/stream?ticket={ticket}")),
        "the session's stream URL with the ticket, got {url}"
    );
    ensure!(
        reply.str("/simulator_id") == SIMULATOR_ID,
        "following the session's live simulator"
    );
    ensure!(!reply.str("/expires_at").is_empty(), "an expiry");
    Ok(())
}

fn reconnect(reply: &Reply) -> anyhow::Result<()> {
    ensure!(reply.str("/transport") == "ws", "for ws");
    ensure!(!reply.str("/ticket").is_empty(), "a fresh ticket");
    ensure!(
        reply.str("/url").contains("last_event_id=1-0"),
        "the URL carries the last event id"
    );
    // The simulator's epoch is random, never the sample's `1`: the stream restarts from a
    // snapshot and says why.
    ensure!(
        reply.str("/resume/mode") == "snapshot" && reply.str("/resume/reason") == "epoch_changed",
        "resume from a snapshot because the epoch changed"
    );
    Ok(())
}

fn revocation(reply: &Reply) -> anyhow::Result<()> {
    ensure!(
        reply.str("/subject") == "mallory",
        "mallory's tokens revoked"
    );
    ensure!(!reply.str("/until").is_empty(), "until when");
    Ok(())
}

fn healthy(reply: &Reply) -> anyhow::Result<()> {
    ensure!(reply.str("/status") == "ok", "status ok");
    let dependencies = reply.body["dependencies"]
        .as_array()
        .context("dependencies")?;
    for name in ["store", "simulator_service"] {
        ensure!(
            dependencies
                .iter()
                .any(|d| d["name"] == name && d["state"] == "ok"),
            "{name} ok"
        );
    }
    Ok(())
}

fn openapi_document(reply: &Reply) -> anyhow::Result<()> {
    ensure!(
        reply.header("content-type") == "application/json",
        "served as JSON"
    );
    ensure!(reply.str("/openapi").starts_with("3.1."), "OpenAPI 3.1");
    Ok(())
}
