//! Every instance of one simulator server, and the operations of its gRPC services on them.
//!
//! The services in `service` only translate between protobuf and these calls, and map
//! [`SimulatorError`] to gRPC statuses.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::Stream;
use prost::bytes::Bytes;
use session_core::domain::{NewSimulator, Symbol, ValidationError};
use session_proto::simulator::v1 as pb;
use tokio::time::Instant;
use tonic::Status;
use ulid::Ulid;

use super::faults::{FaultConfig, PendingCuts, StartFaults};
use super::instance::{Instance, InstanceSettings, InstanceStats, Resume};
use super::subscription;

/// Why a simulator operation failed; each maps to one gRPC code at the service edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimulatorError {
    /// A field of the request is invalid (INVALID_ARGUMENT); the error names it.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No instance has this id (NOT_FOUND).
    #[error("no simulator instance {0:?}")]
    NotFound(String),
    /// The operation needs a running instance (FAILED_PRECONDITION).
    #[error("simulator instance {0:?} is stopped")]
    Stopped(String),
    /// `Start` is failing on purpose (UNAVAILABLE); see `faults`.
    #[error("the simulator is unavailable (fault injection): try again later")]
    Unavailable,
    /// Too many instances run at once (RESOURCE_EXHAUSTED).
    #[error("at most {0} simulator instances may run at once: stop one first")]
    TooMany(usize),
}

/// How a simulator server keeps its instances, and the faults it starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatorSettings {
    /// How each instance keeps and fans out its events.
    pub instance: InstanceSettings,
    /// Most instances running at once; stopped ones beyond this are forgotten, oldest first.
    pub max_instances: usize,
    /// Most stopped instances kept (for `Get`, `List` and `Stop`'s idempotency); beyond it the
    /// oldest stopped one is forgotten as another stops, so a server whose instances come and
    /// go holds a bounded number of them.
    pub max_stopped_instances: usize,
    /// Faults armed at start-up.
    pub faults: FaultConfig,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            instance: InstanceSettings::default(),
            max_instances: 256,
            max_stopped_instances: 64,
            faults: FaultConfig::default(),
        }
    }
}

/// The instances, in start order.
#[derive(Debug, Default)]
struct Registry {
    /// Serial of the next instance; orders `List` and makes its page tokens.
    next_serial: u64,
    instances: BTreeMap<u64, Arc<Instance>>,
    serials: HashMap<String, u64>,
    /// `client_token` → instance id, for idempotent `Start`.
    tokens: HashMap<String, String>,
    /// Instance id → the `traceparent` of the `Start` that made it, which its subscriptions
    /// carry in their response metadata (`telemetry::START_TRACEPARENT`) for subscribers to
    /// link to.
    start_traces: HashMap<String, String>,
}

/// Every instance of a simulator server.
#[derive(Debug)]
pub struct Simulators {
    settings: SimulatorSettings,
    registry: Mutex<Registry>,
    start_faults: Mutex<StartFaults>,
    /// The cut of every new stream from [`FaultConfig::end_streams_after`], until `ClearFaults`.
    default_cut: Mutex<Option<u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn invalid(field: &str, problem: impl std::fmt::Display) -> SimulatorError {
    ValidationError::new(field, problem).into()
}

/// Most instances one `List` page holds.
const MAX_PAGE_SIZE: u32 = 1000;
/// Page size when the request names none.
const DEFAULT_PAGE_SIZE: u32 = 100;
/// Longest stall a fault may ask for.
const MAX_STALL: Duration = Duration::from_secs(600);

impl Simulators {
    /// A registry with no instance yet.
    pub fn new(settings: SimulatorSettings) -> Self {
        let mut start_faults = StartFaults::default();
        start_faults.arm(
            settings.faults.unavailable_starts,
            settings.faults.unavailable_for,
            Instant::now(),
        );
        Self {
            settings,
            registry: Mutex::new(Registry::default()),
            start_faults: Mutex::new(start_faults),
            default_cut: Mutex::new(settings.faults.end_streams_after),
        }
    }

    fn instance(&self, id: &str) -> Result<Arc<Instance>, SimulatorError> {
        if id.is_empty() {
            return Err(invalid("simulator_id", "must not be empty"));
        }
        let registry = lock(&self.registry);
        registry
            .serials
            .get(id)
            .and_then(|serial| registry.instances.get(serial))
            .cloned()
            .ok_or_else(|| SimulatorError::NotFound(id.to_owned()))
    }

    /// Starts an instance, or returns the one started with the same `client_token`.
    ///
    /// # Errors
    /// Invalid symbols, seed or rate; a `client_token` reused with other parameters; too many
    /// instances; `Start` failing on purpose.
    pub fn start(&self, request: &pb::StartRequest) -> Result<pb::SimulatorInfo, SimulatorError> {
        if lock(&self.start_faults).fail_now(Instant::now()) {
            return Err(SimulatorError::Unavailable);
        }
        let spec = NewSimulator::parse(
            &request.symbols,
            Some(request.seed),
            Some(request.events_per_second),
        )?;
        let mut registry = lock(&self.registry);
        if !request.client_token.is_empty()
            && let Some(existing) = registry
                .tokens
                .get(&request.client_token)
                .and_then(|id| registry.serials.get(id))
                .and_then(|serial| registry.instances.get(serial))
        {
            if !existing.matches(&spec) {
                return Err(invalid(
                    "client_token",
                    "was used before with other symbols, seed or events_per_second",
                ));
            }
            return Ok(existing.info());
        }
        let running = registry
            .instances
            .values()
            .filter(|i| !i.is_stopped())
            .count();
        if running >= self.settings.max_instances {
            return Err(SimulatorError::TooMany(self.settings.max_instances));
        }
        Self::forget_oldest_stopped(&mut registry, self.settings.max_instances);
        let id = format!("sim_{}", Ulid::new().to_string().to_lowercase());
        let instance = Instance::start(id.clone(), spec, self.settings.instance);
        let serial = registry.next_serial;
        registry.next_serial += 1;
        registry.instances.insert(serial, Arc::clone(&instance));
        registry.serials.insert(id.clone(), serial);
        if let Some(traceparent) = session_core::telemetry::traceparent(&tracing::Span::current()) {
            registry.start_traces.insert(id.clone(), traceparent);
        }
        if !request.client_token.is_empty() {
            registry.tokens.insert(request.client_token.clone(), id);
        }
        Ok(instance.info())
    }

    /// The `traceparent` of the `Start` of instance `id`, when it was traced.
    pub fn start_trace(&self, id: &str) -> Option<String> {
        lock(&self.registry).start_traces.get(id).cloned()
    }

    /// Keeps at most `max - 1` instances (room for one more), dropping stopped ones, oldest
    /// first, so memory stays bounded however many instances come and go.
    fn forget_oldest_stopped(registry: &mut Registry, max: usize) {
        while registry.instances.len() >= max {
            if !Self::forget_one_stopped(registry) {
                break;
            }
        }
    }

    /// Forgets the oldest stopped instance, if there is one.
    fn forget_one_stopped(registry: &mut Registry) -> bool {
        let Some((&serial, instance)) = registry.instances.iter().find(|(_, i)| i.is_stopped())
        else {
            return false;
        };
        let id = instance.id().to_owned();
        registry.instances.remove(&serial);
        registry.serials.remove(&id);
        registry.tokens.retain(|_, v| *v != id);
        registry.start_traces.remove(&id);
        true
    }

    /// Stops an instance; stopping a stopped one returns it as it is. Beyond
    /// `max_stopped_instances` stopped ones, the oldest is forgotten.
    ///
    /// # Errors
    /// Unknown or empty id.
    pub fn stop(&self, id: &str) -> Result<pb::SimulatorInfo, SimulatorError> {
        let info = self.instance(id)?.stop("stopped by request");
        let mut registry = lock(&self.registry);
        while registry
            .instances
            .values()
            .filter(|i| i.is_stopped())
            .count()
            > self.settings.max_stopped_instances
        {
            Self::forget_one_stopped(&mut registry);
        }
        Ok(info)
    }

    /// How many instances the registry holds, and how many of them are stopped.
    pub fn counts(&self) -> (usize, usize) {
        let registry = lock(&self.registry);
        let stopped = registry
            .instances
            .values()
            .filter(|i| i.is_stopped())
            .count();
        (registry.instances.len(), stopped)
    }

    /// Stops every instance (on shutdown), which ends every stream cleanly.
    pub fn stop_all(&self, reason: &str) {
        let instances: Vec<_> = lock(&self.registry).instances.values().cloned().collect();
        for instance in instances {
            instance.stop(reason);
        }
    }

    /// The current state of one instance.
    ///
    /// # Errors
    /// Unknown or empty id.
    pub fn get(&self, id: &str) -> Result<pb::SimulatorInfo, SimulatorError> {
        Ok(self.instance(id)?.info())
    }

    /// What one instance holds in memory for its subscribers (the retained window and the
    /// broadcast), to show that it stays bounded.
    ///
    /// # Errors
    /// Unknown or empty id.
    pub fn stats(&self, id: &str) -> Result<InstanceStats, SimulatorError> {
        Ok(self.instance(id)?.stats())
    }

    /// One page of instances, oldest first.
    ///
    /// # Errors
    /// A page size above 1000 or a page token this server did not hand out.
    pub fn list(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<pb::ListResponse, SimulatorError> {
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            1..=MAX_PAGE_SIZE => page_size,
            _ => {
                return Err(invalid(
                    "page_size",
                    format!("must be 0 to {MAX_PAGE_SIZE}"),
                ));
            }
        };
        let from = if page_token.is_empty() {
            0
        } else {
            page_token
                .parse::<u64>()
                .map_err(|_| invalid("page_token", "is not a token of this server's List"))?
        };
        let registry = lock(&self.registry);
        let mut page = registry.instances.range(from..);
        let simulators: Vec<_> = page
            .by_ref()
            .take(page_size as usize)
            .map(|(_, i)| i.info())
            .collect();
        let next_page_token = page
            .next()
            .map(|(serial, _)| serial.to_string())
            .unwrap_or_default();
        Ok(pb::ListResponse {
            simulators,
            next_page_token,
        })
    }

    /// The authoritative book of one symbol and the sequence it reflects.
    ///
    /// # Errors
    /// Unknown instance; a symbol that is malformed or not one of the instance's.
    pub fn book(
        &self,
        id: &str,
        symbol: &str,
        depth: u32,
    ) -> Result<pb::GetBookResponse, SimulatorError> {
        let instance = self.instance(id)?;
        let symbol = Symbol::parse("symbol", symbol)?;
        instance
            .book(symbol.as_str(), depth as usize)
            .ok_or_else(|| {
                invalid(
                    "symbol",
                    format!("{:?} is not simulated by {id}", symbol.as_str()),
                )
            })
    }

    /// The event stream of one subscriber: a snapshot or the missed events, then live events.
    ///
    /// # Errors
    /// Unknown or empty id.
    pub fn subscribe(
        &self,
        id: &str,
        resume_from: Option<pb::StreamPosition>,
    ) -> Result<impl Stream<Item = Result<Bytes, Status>> + Send + 'static, SimulatorError> {
        let instance = self.instance(id)?;
        let resume = resume_from.map_or(Resume::Fresh, |p| Resume::After {
            epoch: p.epoch,
            sequence: p.sequence,
        });
        let cut = lock(&instance.pending_cuts)
            .take()
            .or(*lock(&self.default_cut));
        let attachment = instance.attach(resume);
        Ok(subscription::stream(instance, attachment, cut))
    }

    /// Ends streams of one instance after `after_events` more events: the open ones if
    /// `open_streams`, and the next `next_streams` ones.
    ///
    /// # Errors
    /// Unknown or empty id.
    pub fn end_streams(
        &self,
        id: &str,
        after_events: u64,
        open_streams: bool,
        next_streams: u32,
    ) -> Result<(), SimulatorError> {
        let instance = self.instance(id)?;
        *lock(&instance.pending_cuts) = PendingCuts {
            streams: next_streams,
            after_events,
        };
        if open_streams {
            instance.stream_faults.send_modify(|plan| {
                plan.end_open_after = Some(after_events);
                plan.cut_order += 1;
            });
        }
        Ok(())
    }

    /// Makes every stream of one instance send nothing for `duration`.
    ///
    /// # Errors
    /// Unknown id; a duration of 0 or above 10 minutes.
    pub fn stall_streams(&self, id: &str, duration: Duration) -> Result<(), SimulatorError> {
        if duration.is_zero() || duration > MAX_STALL {
            return Err(invalid("duration_millis", "must be 1 to 600000"));
        }
        let instance = self.instance(id)?;
        let until = Instant::now() + duration;
        instance.stream_faults.send_modify(|plan| {
            plan.stall_until = Some(until);
        });
        Ok(())
    }

    /// Restarts one instance: new epoch, sequence from 0, open streams ended.
    ///
    /// # Errors
    /// Unknown id; a stopped instance.
    pub fn restart(&self, id: &str) -> Result<pb::SimulatorInfo, SimulatorError> {
        self.instance(id)?
            .restart()
            .map_err(|_| SimulatorError::Stopped(id.to_owned()))
    }

    /// Makes `Start` fail for the next `count` calls and for `duration`.
    pub fn fail_starts(&self, count: u32, duration: Duration) {
        lock(&self.start_faults).arm(count, duration, Instant::now());
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        *lock(&self.start_faults) = StartFaults::default();
        *lock(&self.default_cut) = None;
        let instances: Vec<_> = lock(&self.registry).instances.values().cloned().collect();
        for instance in instances {
            *lock(&instance.pending_cuts) = PendingCuts::default();
            // Cuts already ordered stay with the streams that took them; `cut_order` keeps
            // counting so that the next order is still new to every stream.
            instance.stream_faults.send_modify(|plan| {
                plan.stall_until = None;
                plan.end_open_after = None;
            });
        }
    }
}
