//! The harness every contract case gets: a store, its manual clock, and builders of test data.

use std::sync::Arc;
use std::time::Duration;

use session_core::clock::ManualClock;
use session_core::config::StoreSettings;
use session_core::domain::{
    Connection, ConnectionId, ConnectionQuality, NewSession, NewSimulator, Session, Simulator,
    Timestamp, UserId,
};
use session_core::store::{
    DynamoStore, HomeFence, InMemoryStore, SharedStore, SimulatorQuotas, create_table,
};
use session_tests::moto::Moto;

/// Sessions made by [`Harness::session`] live this long.
pub const LIFETIME: Duration = Duration::from_secs(3600);

/// Another store over the same data, fenced to the sessions homed in a region (`HomeFence`).
pub type InRegion = Arc<dyn Fn(Option<HomeFence>) -> SharedStore + Send + Sync>;

/// A store under test and the clock it reads.
pub struct Harness {
    pub store: SharedStore,
    pub clock: ManualClock,
    /// Builds the adapter under test over the same data as a region's store (cases about the
    /// home fence); `None` where a harness has no such adapter.
    pub in_region: Option<InRegion>,
}

impl Harness {
    pub fn in_memory() -> Self {
        let clock = ManualClock::at_system_time();
        let memory = InMemoryStore::new(Arc::new(clock.clone()));
        let store = Arc::new(memory.clone());
        let in_region: InRegion = Arc::new(move |fence| Arc::new(memory.clone().fenced_by(fence)));
        Self {
            store,
            clock,
            in_region: Some(in_region),
        }
    }

    /// A DynamoDB store on a fresh table of the shared moto server.
    pub async fn dynamodb() -> Self {
        let moto = Moto::shared();
        let client = DynamoStore::local_client(moto.endpoint(), &StoreSettings::default(), None);
        let table = format!("contract-{}", ulid::Ulid::new());
        create_table(&client, &table)
            .await
            .unwrap_or_else(|e| panic!("creating {table} on {}: {e:?}", moto.endpoint()));
        let clock = ManualClock::at_system_time();
        let dynamo = DynamoStore::new(client, &table, Arc::new(clock.clone()));
        let store = Arc::new(dynamo.clone());
        let in_region: InRegion = Arc::new(move |fence| Arc::new(dynamo.clone().fenced_by(fence)));
        Self {
            store,
            clock,
            in_region: Some(in_region),
        }
    }

    pub fn now(&self) -> Timestamp {
        use session_core::clock::Clock as _;
        self.clock.now()
    }

    pub fn session(&self, owner: &str) -> Session {
        Session::open(user(owner), NewSession::default(), self.now(), LIFETIME)
    }

    pub fn simulator(&self, session: &Session) -> Simulator {
        self.simulator_at(session, 10)
    }

    /// A simulator of `session` asking for `events_per_second`.
    pub fn simulator_at(&self, session: &Session, events_per_second: u32) -> Simulator {
        let request =
            NewSimulator::parse(&["BTC-USD".to_owned()], Some(1), Some(events_per_second)).unwrap();
        Simulator::starting(session, request, self.now())
    }

    pub fn connection(&self, session: &Session, id: &str, lives: Duration) -> Connection {
        Connection {
            id: ConnectionId::parse("connection_id", id).unwrap(),
            session_id: session.id.clone(),
            owner: session.owner.clone(),
            connected_at: self.now(),
            last_seen_at: self.now(),
            expires_at: self.now().plus(lives),
            last_event_id: None,
            quality: ConnectionQuality::default(),
            served_by: None,
            compression: session_core::domain::Compression::None,
            region: None,
            version: 1,
        }
    }
}

/// Quotas of at most `max_active` simulators per session and the largest event budget there is
/// (one simulator at the maximum rate), for cases about other limits.
pub fn quotas(max_active: u32) -> SimulatorQuotas {
    SimulatorQuotas {
        max_active,
        max_events_per_second: NewSimulator::MAX_EVENTS_PER_SECOND,
    }
}

pub fn user(name: &str) -> UserId {
    UserId::parse("sub", name).unwrap()
}

/// Every item of `table`, keyed by `PK`/`SK`, read by a consistent scan through `client`.
pub async fn table_items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> std::collections::HashMap<
    (String, String),
    std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
> {
    let mut pages = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .into_paginator()
        .items()
        .send();
    let mut items = std::collections::HashMap::new();
    while let Some(item) = pages.next().await {
        let item = item.unwrap();
        let key = |name: &str| item[name].as_s().unwrap().clone();
        items.insert((key("PK"), key("SK")), item);
    }
    items
}
