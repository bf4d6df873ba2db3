//! A WebSocket client of the stream, as a browser's: connects with a ticket's URL, reads the
//! events of every `events` message in order, and heartbeats with its position.

use std::collections::VecDeque;

use reqwest::StatusCode;
use serde_json::{Value, json};
use session_tests::book_replica::Replica;
use session_tests::sse::Event;
use session_tests::stream_fixture::{Fixture, PATIENCE};
use session_tests::ws::{Socket, next_message, send};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket client of the stream: the events of every `events` message, in order.
pub struct WsClient {
    socket: Socket,
    pending: VecDeque<Event>,
    /// `events` messages received.
    pub messages: usize,
    heartbeats: u64,
}

impl WsClient {
    /// Connects to a ticket's URL.
    pub async fn open(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the handshake");
        Self {
            socket,
            pending: VecDeque::new(),
            messages: 0,
            heartbeats: 0,
        }
    }

    /// The next event, out-of-band ones included.
    pub async fn next(&mut self) -> Event {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            self.receive().await;
        }
    }

    /// Reads one message (checked against docs/asyncapi.json): an `events` message's events
    /// are queued for [`Self::next`]; any other message is returned.
    async fn receive(&mut self) -> Option<Value> {
        let message = next_message(&mut self.socket, PATIENCE)
            .await
            .expect("the connection stays open");
        let Message::Text(text) = message else {
            return None;
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["type"] != "events" {
            return Some(message);
        }
        self.messages += 1;
        for event in message["events"].as_array().unwrap() {
            self.pending.push_back(Event {
                id: event["id"].as_str().map(str::to_owned),
                event: event["event"].as_str().unwrap().to_owned(),
                data: event["data"].clone(),
            });
        }
        None
    }

    /// Sends a heartbeat that reports `last_event_id` and returns its acknowledgement; the
    /// events that arrive meanwhile stay queued.
    pub async fn heartbeat_ack(&mut self, last_event_id: Option<&str>) -> Value {
        self.heartbeat(last_event_id).await;
        loop {
            if let Some(message) = self.receive().await
                && message["type"] == "heartbeat_ack"
            {
                return message;
            }
        }
    }

    /// Reads until `replica` holds `count` more events.
    pub async fn read_into(&mut self, replica: &mut Replica, count: usize) {
        let target = replica.events + count;
        while replica.events < target {
            let event = self.next().await;
            replica.apply(&event);
        }
    }
}

/// A `ws` ticket's URL; through the reconnect endpoint when resuming from `last_event_id`.
pub async fn ws_url(fixture: &Fixture, last_event_id: Option<&str>) -> String {
    let answer = match last_event_id {
        None => {
            fixture
                .user
                .post(
                    &format!("/v1/sessions/{}/tickets", fixture.session),
                    &json!({ "transport": "ws" }),
                )
                .await
        }
        Some(last) => {
            fixture
                .user
                .post(
                    &format!("/v1/sessions/{}/reconnect", fixture.session),
                    &json!({ "transport": "ws", "last_event_id": last }),
                )
                .await
        }
    };
    assert!(
        answer.status == StatusCode::CREATED || answer.status == StatusCode::OK,
        "{answer:?}"
    );
    answer.body["url"].as_str().unwrap().to_owned()
}

impl WsClient {
    /// Sends a heartbeat that reports `last_event_id`, as the page does every few seconds.
    pub async fn heartbeat(&mut self, last_event_id: Option<&str>) {
        self.heartbeats += 1;
        let beat = json!({
            "action": "heartbeat",
            "seq": self.heartbeats,
            "client_time": 0,
            "last_event_id": last_event_id,
        });
        send(&mut self.socket, &beat).await;
    }
}
