//! Conversions between domain values and DynamoDB items.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::schema::TableSpec;
use super::write::{SCHEMA_VERSION, SCHEMA_VERSION_ATTR};
use crate::domain::{
    Compression, Connection, ConnectionId, ConnectionQuality, Lease, Metadata, RegionName, Session,
    SessionId, SessionName, SessionStatus, Simulator, SimulatorId, SimulatorStatus, StoredResponse,
    Symbol, Timestamp, UserId,
};
use crate::store::StoreError;

/// A DynamoDB item.
pub(super) type Item = HashMap<String, AttributeValue>;

/// A stored item this code cannot read: corrupt data or a schema mismatch.
#[derive(Debug, thiserror::Error)]
#[error("stored item has a missing or malformed attribute {0:?}")]
pub(super) struct MalformedItem(String);

fn malformed(attribute: &str) -> StoreError {
    StoreError::Backend(Box::new(MalformedItem(attribute.to_owned())))
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n<T: ToString + Copy>(value: T) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn ms(t: Timestamp) -> AttributeValue {
    n(t.unix_millis())
}

pub(super) fn session_pk(id: &SessionId) -> String {
    format!("SESSION#{id}")
}

pub(super) fn owner_pk(owner: &UserId) -> String {
    format!("OWNER#{owner}")
}

/// The partition of a region's own items: its beat and, after a failover, its fence.
pub(super) fn region_pk(region: &RegionName) -> String {
    format!("REGION#{region}")
}

pub(super) const SESSION_SK: &str = "SESSION";
pub(super) const QUOTA_SK: &str = "QUOTA";

/// The key of the owner's counters (open sessions, event budget) kept by `region`
/// (`docs/multi-region.md`, "Quotas across regions"): `OWNER#u` / `QUOTA#<region>`, or
/// `OWNER#u` / `QUOTA` when `region` is `None`: a single-region deployment and the primary
/// region of a multi-region one, whose counters exist from before regions (no migration).
/// The region goes in the sort key rather than the partition key: the owner's items stay in
/// one partition and every existing key is unchanged, so nothing needs migrating.
pub(super) fn counters_key(owner: &UserId, region: Option<&RegionName>) -> Item {
    match region {
        Some(region) => key(owner_pk(owner), format!("{QUOTA_SK}#{region}")),
        None => key(owner_pk(owner), QUOTA_SK),
    }
}

/// The region whose own counters a session homed in `home` uses (`None`: the unsuffixed ones
/// of the primary region).
pub(super) fn counters_region<'a>(
    home: &'a RegionName,
    primary: &RegionName,
) -> Option<&'a RegionName> {
    (home != primary).then_some(home)
}
pub(super) const SIM_PREFIX: &str = "SIM#";
pub(super) const CONN_PREFIX: &str = "CONN#";
/// Sort key prefix of a region's count of a session's WebSocket connections (multi-region).
pub(super) const CONN_COUNT_PREFIX: &str = "WSCOUNT#";

/// The item on which region `region` counts a session's WebSocket connections in a
/// multi-region deployment (`SESSION#<id>` / `WSCOUNT#<region>`): one per region, written by
/// that region alone.
pub(super) fn connection_count_key(session: &SessionId, region: &RegionName) -> Item {
    key(session_pk(session), format!("{CONN_COUNT_PREFIX}{region}"))
}

/// How many GSI1 partitions the WebSocket connection entries are spread over.
///
/// One partition key for every connection would be a hot partition: each heartbeat rewrites the
/// connection item and so its GSI1 entry, and one index partition takes about 1,000 writes a
/// second (and throttling an index throttles the table's writes too). Spreading them by session
/// keeps a session's connections together while the total is split sixteenfold. Readers query
/// every shard. Schema version 3 went from 8 shards to 16: since `h mod 8 == (h mod 16) mod 8`,
/// a session's old shard is one of the 16 (its new one or 8 below it), so reading all 16 reads
/// both layouts while migration 3 moves the entries.
pub(super) const WS_CONNECTION_SHARDS: u32 = 16;

/// The GSI1 shard of a session's WebSocket connection entries: FNV-1a of the session id, modulo
/// [`WS_CONNECTION_SHARDS`]. Spelled out rather than `std`'s hasher, whose output may change
/// between Rust releases (and is seeded per process for `HashMap`): every writer and reader, of
/// every version, must agree on it.
pub(super) fn ws_connection_shard(session: &SessionId) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = session
        .as_str()
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    // The remainder is below WS_CONNECTION_SHARDS, so it fits a u32.
    (hash % u64::from(WS_CONNECTION_SHARDS)) as u32
}

/// GSI1 partition key of region `region`'s WebSocket connection entries in `shard`:
/// `WSCONN#<shard>` for the primary region (or the only one), `WSCONN#<region>#<shard>` for
/// another, so each region's streamers find their own connections only.
pub(super) fn ws_connections_pk(region: Option<&RegionName>, shard: u32) -> String {
    match region {
        None => format!("WSCONN#{shard}"),
        Some(region) => format!("WSCONN#{region}#{shard}"),
    }
}

/// The GSI1 keys of a connection's sessions-with-connections entry (`WSCONN#[<region>#]<shard>`
/// / `<session_id>#<connection_id>`).
pub(super) fn ws_connection_entry(
    region: Option<&RegionName>,
    session: &SessionId,
    connection: &str,
) -> [(String, AttributeValue); 2] {
    [
        (
            TableSpec::GSI1PK.to_owned(),
            s(ws_connections_pk(region, ws_connection_shard(session))),
        ),
        (
            TableSpec::GSI1SK.to_owned(),
            s(format!("{session}#{connection}")),
        ),
    ]
}

/// The primary key `{PK, SK}` of an item.
pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([
        (TableSpec::PK.to_owned(), s(pk)),
        (TableSpec::SK.to_owned(), s(sk)),
    ])
}

/// Typed reads of attributes, each failing with the attribute's name.
pub(super) trait ItemExt {
    fn string(&self, name: &str) -> Result<&str, StoreError>;
    fn opt_string(&self, name: &str) -> Option<&str>;
    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<T, StoreError>;
    fn opt_number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, StoreError>;
    fn opt_bool(&self, name: &str) -> Result<Option<bool>, StoreError>;
    fn timestamp(&self, name: &str) -> Result<Timestamp, StoreError> {
        self.number(name).map(Timestamp::from_unix_millis)
    }
}

impl ItemExt for Item {
    fn string(&self, name: &str) -> Result<&str, StoreError> {
        self.opt_string(name).ok_or_else(|| malformed(name))
    }

    fn opt_string(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(AttributeValue::S(v)) => Some(v),
            _ => None,
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.opt_number(name)?.ok_or_else(|| malformed(name))
    }

    fn opt_number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| malformed(name)),
            Some(_) => Err(malformed(name)),
        }
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, StoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttributeValue::Bool(v)) => Ok(Some(*v)),
            Some(_) => Err(malformed(name)),
        }
    }
}

/// The oldest schema version readers accept. Versions 2 and 3 changed only connection items'
/// GSI1 keys, which no item reader uses, so version 1 items read as they are; and they must,
/// because the releases before schema versions existed go on writing them until a deploy of
/// this code has replaced them, after the deploy's migration ran. Raise it only when a version
/// changes what readers use, and then to the previous version (the one a rollout still writes).
pub(super) const OLDEST_READABLE_SCHEMA: u32 = 1;

/// The item's schema version (absent: 1), if this code reads it: from
/// [`OLDEST_READABLE_SCHEMA`] (items a pending migration has not reached yet, or written by the
/// release a rollout replaces) to one past the current. The next release's migration runs on
/// deploy while this code still serves, so its items must read here: a migration may only make
/// changes the release before it reads correctly (what it adds or moves, that release ignores),
/// and a change readers would misread takes two releases. Two past the current is malformed.
pub(super) fn schema_version_of(item: &Item) -> Result<u32, StoreError> {
    let version = item.opt_number(SCHEMA_VERSION_ATTR)?.unwrap_or(1);
    if (OLDEST_READABLE_SCHEMA..=SCHEMA_VERSION + 1).contains(&version) {
        Ok(version)
    } else {
        Err(malformed(SCHEMA_VERSION_ATTR))
    }
}

fn parse<T, E>(name: &str, result: Result<T, E>) -> Result<T, StoreError> {
    result.map_err(|_| malformed(name))
}

pub(super) fn session_item(session: &Session) -> Item {
    let mut item = key(session_pk(&session.id), SESSION_SK);
    item.extend([
        ("id".to_owned(), s(session.id.as_str())),
        ("owner".to_owned(), s(session.owner.as_str())),
        ("status".to_owned(), s(session.status.as_str())),
        ("created_at".to_owned(), ms(session.created_at)),
        ("expires_at".to_owned(), ms(session.expires_at)),
        ("version".to_owned(), n(session.version)),
        (
            TableSpec::TTL.to_owned(),
            n(session.expires_at.unix_seconds_ceil()),
        ),
        (TableSpec::GSI1PK.to_owned(), s(owner_pk(&session.owner))),
        (TableSpec::GSI1SK.to_owned(), s(session.id.as_str())),
    ]);
    if let Some(name) = &session.name {
        item.insert("name".to_owned(), s(name.as_str()));
    }
    if let Some(metadata) = &session.metadata {
        item.insert("metadata".to_owned(), s(metadata.to_json()));
    }
    if let Some(closed_at) = session.closed_at {
        item.insert("closed_at".to_owned(), ms(closed_at));
    }
    // A session homed in the primary region of a single-region deployment has neither, as
    // every item written before regions existed: they read as the primary region, epoch 1.
    if let Some(region) = &session.home_region {
        item.insert(HOME_REGION.to_owned(), s(region.as_str()));
        item.insert(HOME_EPOCH.to_owned(), n(session.home_epoch));
    }
    item
}

/// The session item's home region attribute (absent: the primary region).
pub(super) const HOME_REGION: &str = "home_region";

/// The session item's home epoch attribute (absent: 1).
pub(super) const HOME_EPOCH: &str = "home_epoch";

pub(super) fn session_from(item: &Item) -> Result<Session, StoreError> {
    schema_version_of(item)?;
    let metadata = item
        .opt_string("metadata")
        .map(|json| {
            let value = parse("metadata", serde_json::from_str(json))?;
            parse("metadata", Metadata::parse("metadata", value))
        })
        .transpose()?;
    Ok(Session {
        id: parse("id", SessionId::parse("id", item.string("id")?))?,
        owner: parse("owner", UserId::parse("owner", item.string("owner")?))?,
        name: item
            .opt_string("name")
            .map(|v| parse("name", SessionName::parse("name", v)))
            .transpose()?,
        metadata,
        status: SessionStatus::parse(item.string("status")?).ok_or_else(|| malformed("status"))?,
        created_at: item.timestamp("created_at")?,
        expires_at: item.timestamp("expires_at")?,
        closed_at: item
            .opt_number("closed_at")?
            .map(Timestamp::from_unix_millis),
        version: item.number("version")?,
        home_region: item
            .opt_string(HOME_REGION)
            .map(|v| parse(HOME_REGION, RegionName::parse(HOME_REGION, v)))
            .transpose()?,
        home_epoch: item.opt_number(HOME_EPOCH)?.unwrap_or(1),
    })
}

pub(super) fn simulator_item(sim: &Simulator) -> Item {
    let mut item = key(
        session_pk(&sim.session_id),
        format!("{SIM_PREFIX}{}", sim.id),
    );
    let symbols: Vec<String> = sim.symbols.iter().map(|s| s.as_str().to_owned()).collect();
    item.extend([
        ("id".to_owned(), s(sim.id.as_str())),
        ("session_id".to_owned(), s(sim.session_id.as_str())),
        (
            "symbols".to_owned(),
            AttributeValue::L(symbols.into_iter().map(s).collect()),
        ),
        ("seed".to_owned(), n(sim.seed)),
        ("events_per_second".to_owned(), n(sim.events_per_second)),
        ("status".to_owned(), s(sim.status.as_str())),
        ("created_at".to_owned(), ms(sim.created_at)),
        ("updated_at".to_owned(), ms(sim.updated_at)),
        ("expires_at".to_owned(), ms(sim.expires_at)),
        ("version".to_owned(), n(sim.version)),
        (
            TableSpec::TTL.to_owned(),
            n(sim.expires_at.unix_seconds_ceil()),
        ),
    ]);
    if let Some(backend_id) = &sim.backend_id {
        item.insert("backend_id".to_owned(), s(backend_id));
    }
    if let Some(reason) = &sim.reason {
        item.insert("reason".to_owned(), s(reason));
    }
    // Optional: records without it belong to the static server (no migration needed).
    if let Some(host) = &sim.host {
        item.insert("host_id".to_owned(), s(&host.id));
        item.insert("host_address".to_owned(), s(&host.address));
    }
    item
}

pub(super) fn simulator_from(item: &Item) -> Result<Simulator, StoreError> {
    let Some(AttributeValue::L(list)) = item.get("symbols") else {
        return Err(malformed("symbols"));
    };
    let symbols = list
        .iter()
        .map(|v| match v {
            AttributeValue::S(text) => parse("symbols", Symbol::parse("symbols", text)),
            _ => Err(malformed("symbols")),
        })
        .collect::<Result<_, _>>()?;
    Ok(Simulator {
        id: parse("id", SimulatorId::parse("id", item.string("id")?))?,
        session_id: parse(
            "session_id",
            SessionId::parse("session_id", item.string("session_id")?),
        )?,
        symbols,
        seed: item.number("seed")?,
        events_per_second: item.number("events_per_second")?,
        status: SimulatorStatus::parse(item.string("status")?)
            .ok_or_else(|| malformed("status"))?,
        backend_id: item.opt_string("backend_id").map(str::to_owned),
        host: match (item.opt_string("host_id"), item.opt_string("host_address")) {
            (Some(id), Some(address)) => Some(crate::domain::SimulatorHost {
                id: id.to_owned(),
                address: address.to_owned(),
            }),
            _ => None,
        },
        reason: item.opt_string("reason").map(str::to_owned),
        created_at: item.timestamp("created_at")?,
        updated_at: item.timestamp("updated_at")?,
        expires_at: item.timestamp("expires_at")?,
        version: item.number("version")?,
    })
}

pub(super) fn connection_item(c: &Connection) -> Item {
    let mut item = key(session_pk(&c.session_id), format!("{CONN_PREFIX}{}", c.id));
    let q = &c.quality;
    item.extend([
        ("id".to_owned(), s(c.id.as_str())),
        ("session_id".to_owned(), s(c.session_id.as_str())),
        ("owner".to_owned(), s(c.owner.as_str())),
        ("connected_at".to_owned(), ms(c.connected_at)),
        ("last_seen_at".to_owned(), ms(c.last_seen_at)),
        ("expires_at".to_owned(), ms(c.expires_at)),
        ("version".to_owned(), n(c.version)),
        ("rtt_ms".to_owned(), n(q.rtt_ms)),
        ("jitter_ms".to_owned(), n(q.jitter_ms)),
        ("heartbeats".to_owned(), n(q.heartbeats)),
        ("missed_heartbeats".to_owned(), n(q.missed_heartbeats)),
        ("events_received".to_owned(), n(q.events_received)),
        ("events_sent".to_owned(), n(q.events_sent)),
        ("last_seq".to_owned(), n(q.last_seq)),
        (
            TableSpec::TTL.to_owned(),
            n(c.expires_at.unix_seconds_ceil()),
        ),
    ]);
    // The sessions-with-connections entry: every connection item is in GSI1 under its
    // session's shard (updates put the whole item, so they keep it).
    item.extend(ws_connection_entry(
        c.region.as_ref(),
        &c.session_id,
        c.id.as_str(),
    ));
    if let Some(region) = &c.region {
        item.insert("region".to_owned(), s(region.as_str()));
    }
    if let Some(last) = &c.last_event_id {
        item.insert("last_event_id".to_owned(), s(last));
    }
    if let Some(streamer) = &c.served_by {
        item.insert("served_by".to_owned(), s(streamer));
    }
    // Written only when granted: an item without it (older ones too) means uncompressed.
    if !c.compression.is_none() {
        item.insert("compression".to_owned(), s(c.compression.as_str()));
    }
    item
}

pub(super) fn connection_from(item: &Item) -> Result<Connection, StoreError> {
    schema_version_of(item)?;
    Ok(Connection {
        id: parse("id", ConnectionId::parse("id", item.string("id")?))?,
        session_id: parse(
            "session_id",
            SessionId::parse("session_id", item.string("session_id")?),
        )?,
        owner: parse("owner", UserId::parse("owner", item.string("owner")?))?,
        connected_at: item.timestamp("connected_at")?,
        last_seen_at: item.timestamp("last_seen_at")?,
        expires_at: item.timestamp("expires_at")?,
        last_event_id: item.opt_string("last_event_id").map(str::to_owned),
        quality: ConnectionQuality {
            rtt_ms: item.number("rtt_ms")?,
            jitter_ms: item.number("jitter_ms")?,
            heartbeats: item.number("heartbeats")?,
            missed_heartbeats: item.number("missed_heartbeats")?,
            events_received: item.number("events_received")?,
            events_sent: item.number("events_sent")?,
            last_seq: item.opt_number("last_seq")?.unwrap_or(0),
        },
        // Items written before the attribute existed have none: nobody seen yet.
        served_by: item.opt_string("served_by").map(str::to_owned),
        // An optional attribute (no schema_version bump): absent means uncompressed; a name
        // this build does not know is refused as a corrupt item would be.
        compression: match item.opt_string("compression") {
            None => Compression::None,
            Some(name) => Compression::parse(name).ok_or_else(|| malformed("compression"))?,
        },
        // Absent: the primary region's (every item written before regions existed too).
        region: item
            .opt_string("region")
            .map(|r| parse("region", RegionName::parse("region", r)))
            .transpose()?,
        version: item.number("version")?,
    })
}

/// The session of a connection item, or of its GSI1 entry read with only `session_id`
/// projected.
pub(super) fn connection_session_from(item: &Item) -> Result<SessionId, StoreError> {
    parse(
        "session_id",
        SessionId::parse("session_id", item.string("session_id")?),
    )
}

pub(super) fn lease_from(item: &Item) -> Result<Lease, StoreError> {
    Ok(Lease {
        name: item.string("name")?.to_owned(),
        owner: item.string("owner")?.to_owned(),
        expires_at: item.timestamp("expires_at")?,
        token: item.number("token")?,
        // Items written before the attribute existed have none: not draining.
        draining: item.opt_bool("draining")?.unwrap_or(false),
    })
}

pub(super) fn response_attributes(response: &StoredResponse) -> [(String, AttributeValue); 3] {
    let headers = serde_json::to_string(&response.headers).unwrap_or_else(|_| "[]".to_owned());
    [
        ("response_status".to_owned(), n(response.status)),
        ("response_headers".to_owned(), s(headers)),
        ("response_body".to_owned(), s(response.body.clone())),
    ]
}

pub(super) fn response_from(item: &Item) -> Result<StoredResponse, StoreError> {
    Ok(StoredResponse {
        status: item.number("response_status")?,
        headers: parse(
            "response_headers",
            serde_json::from_str(item.string("response_headers")?),
        )?,
        body: item.string("response_body")?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_id(text: &str) -> SessionId {
        SessionId::parse("session_id", text).unwrap()
    }

    #[test]
    fn the_connection_shard_of_a_session_never_changes() {
        // Pinned: writers and readers of every version must agree on these.
        // With the shard of the 8-shard layout (schema version 2) each had: one of the 16.
        for (id, shard, eight_shard) in [
            ("ses_01JDQ7Z8X9K3M4N5P6Q7R8S9T0", 9, 1),
            ("ses_01ARZ3NDEKTSV4RRFFQ69G5FAV", 14, 6),
            ("ses_00000000000000000000000000", 15, 7),
        ] {
            assert_eq!(ws_connection_shard(&session_id(id)), shard, "{id}");
            assert_eq!(shard % 8, eight_shard, "{id}");
        }
    }

    #[test]
    fn sessions_spread_over_every_connection_shard() {
        let mut seen = [false; WS_CONNECTION_SHARDS as usize];
        for _ in 0..500 {
            let shard = ws_connection_shard(&SessionId::generate());
            assert!(shard < WS_CONNECTION_SHARDS);
            seen[shard as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }

    #[test]
    fn a_connection_item_is_in_gsi1_under_its_sessions_shard() {
        let connection = Connection::sample();

        let item = connection_item(&connection);

        assert_eq!(item.opt_string(TableSpec::GSI1PK), Some("WSCONN#9"));
        assert_eq!(
            item.opt_string(TableSpec::GSI1SK),
            Some("ses_01JDQ7Z8X9K3M4N5P6Q7R8S9T0#L0SM9cOFvHcCIhw=")
        );
        assert_eq!(connection_from(&item).ok(), Some(connection));
    }

    #[test]
    fn compression_is_an_optional_attribute_and_an_item_without_it_is_uncompressed() {
        let connection = Connection {
            compression: Compression::Deflate,
            region: None,
            ..Connection::sample()
        };
        let mut item = connection_item(&connection);

        assert_eq!(item.opt_string("compression"), Some("deflate"));
        assert_eq!(connection_from(&item).ok(), Some(connection.clone()));
        assert_eq!(
            connection_item(&Connection::sample()).opt_string("compression"),
            None
        );

        // An item written before the attribute existed: same schema version, uncompressed.
        item.remove("compression");
        assert_eq!(
            connection_from(&item).ok().map(|c| c.compression),
            Some(Compression::None)
        );
        item.insert("compression".to_owned(), s("zstd"));
        assert!(connection_from(&item).is_err());
    }

    #[test]
    fn served_by_is_an_optional_attribute_of_a_connection_item() {
        let connection = Connection {
            served_by: Some("streamer-a".to_owned()),
            version: 2,
            ..Connection::sample()
        };
        let mut item = connection_item(&connection);

        assert_eq!(item.opt_string("served_by"), Some("streamer-a"));
        assert_eq!(connection_from(&item).ok(), Some(connection.clone()));

        // An item written before the attribute existed.
        item.remove("served_by");
        assert_eq!(connection_from(&item).ok().and_then(|c| c.served_by), None);
    }

    #[test]
    fn readers_accept_every_schema_version_up_to_the_next_releases_and_no_later_one() {
        let at = |version: Option<u32>| {
            let mut item = Item::new();
            if let Some(v) = version {
                item.insert(SCHEMA_VERSION_ATTR.to_owned(), n(v));
            }
            schema_version_of(&item).ok()
        };
        assert_eq!(
            at(None),
            Some(1),
            "absent: written before the attribute existed"
        );
        for version in OLDEST_READABLE_SCHEMA..=SCHEMA_VERSION + 1 {
            assert_eq!(at(Some(version)), Some(version));
        }
        assert_eq!(at(Some(SCHEMA_VERSION + 2)), None);
        assert_eq!(at(Some(0)), None);
    }

    #[test]
    fn a_lease_item_without_draining_is_not_draining() {
        let mut item = key("LEASE#session/s1", "LEASE");
        item.extend([
            ("name".to_owned(), s("session/s1")),
            ("owner".to_owned(), s("streamer-a")),
            ("expires_at".to_owned(), n(10_000)),
            ("token".to_owned(), n(3)),
        ]);

        assert!(!lease_from(&item).unwrap().draining);
        item.insert("draining".to_owned(), AttributeValue::Bool(true));
        assert!(lease_from(&item).unwrap().draining);
        item.insert("draining".to_owned(), s("yes"));
        assert!(
            lease_from(&item).is_err(),
            "a malformed flag is not read as false"
        );
    }
}
