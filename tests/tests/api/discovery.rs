//! Service discovery against real parts: moto's Cloud Map (`DiscoverInstances`, custom health
//! status) behind `CloudMapResolver` and its refreshing `Watch`, and two real simulator servers
//! behind `RoutedSimulatorBackend` under the session service.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::types::{CustomHealthStatus, HealthCheckCustomConfig};
use session_core::auth::{GrpcTokenValidator, Principal, TokenValidator as _};
use session_core::backend::RoutedSimulatorBackend;
use session_core::clock::{Clock, SystemClock};
use session_core::component::Component;
use session_core::config::{DiscoverySettings, Settings};
use session_core::discovery::{Backend, CloudMapResolver, Instance, Resolver, Watch};
use session_core::domain::{NewSession, NewSimulator, SimulatorStatus, UserId};
use session_core::service::SessionService;
use session_core::store::InMemoryStore;
use session_local::auth::{AuthServer, AuthSettings};
use session_local::simulator::{SimulatorHandle, SimulatorServer, SimulatorSettings};
use session_tests::moto::Moto;

/// The production namespace and service (`session.internal`, `simulator`: what the IAM
/// roles grant) in a region of moto's Cloud Map of its own, whose instances' health the test
/// sets (custom health checks).
struct Registry {
    admin: Client,
    region: &'static str,
    backend: Backend,
    settings: DiscoverySettings,
    service_id: String,
}

impl Registry {
    /// The registry of `region` with the simulator servers' service: a region per test, as
    /// moto keeps one registry per region.
    async fn new(region: &'static str) -> Self {
        Self::of(region, Backend::Simulator).await
    }

    /// The registry of `region` with `backend`'s service.
    async fn of(region: &'static str, backend: Backend) -> Self {
        let endpoint = Moto::shared().endpoint();
        // The tests' own calls name no component: the permission check ignores them.
        let admin = CloudMapResolver::local_client_in(endpoint, region, None);
        let namespace = DiscoverySettings::default().namespace;
        admin
            .create_http_namespace()
            .name(&namespace)
            .send()
            .await
            .expect("moto creates a namespace");
        let namespace_id = admin
            .list_namespaces()
            .send()
            .await
            .expect("moto lists namespaces")
            .namespaces()
            .iter()
            .find(|n| n.name() == Some(namespace.as_str()))
            .and_then(|n| n.id().map(str::to_owned))
            .expect("the namespace is listed");
        let service_id = admin
            .create_service()
            .name(backend.name())
            .namespace_id(namespace_id)
            .health_check_custom_config(HealthCheckCustomConfig::builder().build())
            .send()
            .await
            .expect("moto creates a service")
            .service()
            .and_then(|s| s.id().map(str::to_owned))
            .expect("the service has an id");
        let settings = DiscoverySettings {
            namespace,
            cloudmap_endpoint: Some(endpoint.to_owned()),
            ..DiscoverySettings::default()
        };
        Self {
            admin,
            region,
            backend,
            settings,
            service_id,
        }
    }

    /// The resolver a component that discovers the backend builds (the REST API the
    /// simulator servers, the HTTP authorizer the auth replicas), its calls naming it.
    fn resolver(&self) -> CloudMapResolver {
        let client = CloudMapResolver::local_client_in(
            self.settings
                .cloudmap_endpoint
                .as_deref()
                .unwrap_or_default(),
            self.region,
            Some(match self.backend {
                Backend::Simulator => Component::RestApi,
                Backend::Auth => Component::Authorizer,
            }),
        );
        CloudMapResolver::new(client, &self.settings)
    }

    async fn register(&self, id: &str, address: std::net::SocketAddr) {
        self.admin
            .register_instance()
            .service_id(&self.service_id)
            .instance_id(id)
            .attributes("AWS_INSTANCE_IPV4", address.ip().to_string())
            .attributes("AWS_INSTANCE_PORT", address.port().to_string())
            .attributes("zone", "zone-a")
            .send()
            .await
            .expect("moto registers an instance");
    }

    async fn set_health(&self, id: &str, status: CustomHealthStatus) {
        self.admin
            .update_instance_custom_health_status()
            .service_id(&self.service_id)
            .instance_id(id)
            .status(status)
            .send()
            .await
            .expect("moto sets the health");
    }

    async fn deregister(&self, id: &str) {
        self.admin
            .deregister_instance()
            .service_id(&self.service_id)
            .instance_id(id)
            .send()
            .await
            .expect("moto deregisters an instance");
    }
}

fn ids(instances: &[Instance]) -> Vec<&str> {
    instances.iter().map(|i| i.id.as_str()).collect()
}

/// Waits up to 5 s for `watch` to list exactly `expected`.
async fn until_listed(watch: &Watch, expected: &[&str]) {
    for _ in 0..100 {
        if watch.current().is_some_and(|list| ids(&list) == expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never listed {expected:?}; listed {:?}", watch.current());
}

#[tokio::test]
async fn cloud_map_discovery_lists_only_healthy_instances_with_their_address_and_zone() {
    let registry = Registry::new("us-west-1").await;
    registry
        .register("sim-a", "127.0.0.1:50061".parse().unwrap())
        .await;
    registry
        .register("sim-b", "127.0.0.1:50062".parse().unwrap())
        .await;
    registry
        .set_health("sim-b", CustomHealthStatus::Unhealthy)
        .await;

    let instances = registry
        .resolver()
        .instances(Backend::Simulator)
        .await
        .unwrap();

    assert_eq!(
        instances,
        vec![Instance {
            id: "sim-a".into(),
            address: "127.0.0.1:50061".into(),
            zone: Some("zone-a".into()),
        }]
    );
}

#[tokio::test]
async fn a_refresh_picks_up_a_new_and_a_removed_instance() {
    let registry = Registry::new("us-west-2").await;
    registry
        .register("sim-a", "127.0.0.1:50061".parse().unwrap())
        .await;
    let resolver: Arc<dyn Resolver> = Arc::new(registry.resolver());
    let watch = Watch::spawn(
        std::future::ready(resolver),
        Backend::Simulator,
        Duration::from_millis(100),
    );
    until_listed(&watch, &["sim-a"]).await;

    registry
        .register("sim-b", "127.0.0.1:50062".parse().unwrap())
        .await;
    until_listed(&watch, &["sim-a", "sim-b"]).await;

    registry.deregister("sim-a").await;
    until_listed(&watch, &["sim-b"]).await;
}

#[tokio::test]
async fn a_registry_that_fails_keeps_the_last_good_list() {
    let registry = Registry::new("eu-west-1").await;
    registry
        .register("sim-a", "127.0.0.1:50061".parse().unwrap())
        .await;
    let resolver: Arc<dyn Resolver> = Arc::new(registry.resolver());
    let watch = Watch::spawn(
        std::future::ready(Arc::clone(&resolver)),
        Backend::Simulator,
        Duration::from_millis(100),
    );
    until_listed(&watch, &["sim-a"]).await;

    // The service goes away: every refresh now fails (moto answers ServiceNotFound).
    registry.deregister("sim-a").await;
    registry
        .admin
        .delete_service()
        .id(&registry.service_id)
        .send()
        .await
        .expect("moto deletes the service");
    assert!(resolver.instances(Backend::Simulator).await.is_err());
    tokio::time::sleep(Duration::from_millis(400)).await;

    assert_eq!(ids(&watch.current().unwrap()), ["sim-a"]);
}

/// Two simulator servers registered in a registry of their own, and the session service over
/// them (in-memory store, production settings).
struct TwoServers {
    registry: Registry,
    servers: Vec<(String, SimulatorHandle)>,
    watch: Watch,
    service: SessionService,
    caller: Principal,
}

impl TwoServers {
    async fn start(region: &'static str) -> Self {
        let registry = Registry::new(region).await;
        let mut servers = Vec::new();
        for id in ["sim-a", "sim-b"] {
            let server = SimulatorServer::spawn(SimulatorSettings::default())
                .await
                .expect("a simulator server");
            registry.register(id, server.addr()).await;
            servers.push((id.to_owned(), server));
        }
        let resolver: Arc<dyn Resolver> = Arc::new(registry.resolver());
        let watch = Watch::spawn(
            std::future::ready(resolver),
            Backend::Simulator,
            Duration::from_millis(100),
        );
        until_listed(&watch, &["sim-a", "sim-b"]).await;
        let settings = Settings::default();
        let backend = RoutedSimulatorBackend::new(watch.clone(), &settings).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = Arc::new(InMemoryStore::new(clock.clone()));
        let service =
            SessionService::from_settings(&settings, store, Arc::new(backend), clock.clone());
        let caller = Principal {
            user: UserId::parse("sub", "alice").unwrap(),
            scopes: Vec::new(),
            expires_at: clock.now().plus(Duration::from_secs(3600)),
            token_id: "tok-alice".into(),
        };
        Self {
            registry,
            servers,
            watch,
            service,
            caller,
        }
    }

    fn server(&self, id: &str) -> &SimulatorHandle {
        &self.servers.iter().find(|(i, _)| i == id).unwrap().1
    }
}

fn request() -> NewSimulator {
    NewSimulator::parse(&["BTC-USD".to_owned()], Some(7), None).unwrap()
}

#[tokio::test]
async fn a_simulator_is_recorded_with_its_server_and_its_control_calls_go_there() {
    let stack = TwoServers::start("eu-west-2").await;
    let session = stack
        .service
        .create_session(&stack.caller, NewSession::default())
        .await
        .unwrap();
    let mut used = std::collections::BTreeSet::new();

    // Starts land on either server (power of two choices); each is checked on the one named.
    for _ in 0..20 {
        let started = stack
            .service
            .start_simulator(&stack.caller, &session.id, request())
            .await
            .unwrap();
        let host = started.host.clone().expect("the record names its server");
        let backend_id = started.backend_id.clone().unwrap();
        let other = if host.id == "sim-a" { "sim-b" } else { "sim-a" };
        assert_eq!(host.address, stack.server(&host.id).addr().to_string());
        assert!(stack.server(&host.id).simulators().get(&backend_id).is_ok());
        assert!(stack.server(other).simulators().get(&backend_id).is_err());

        let stopped = stack
            .service
            .stop_simulator(&stack.caller, &session.id, &started.id)
            .await
            .unwrap();

        assert_eq!(stopped.status, SimulatorStatus::Stopped);
        let on_server = stack
            .server(&host.id)
            .simulators()
            .get(&backend_id)
            .unwrap();
        assert_eq!(
            on_server.state(),
            session_proto::simulator::v1::SimulatorState::Stopped
        );
        used.insert(host.id);
        if used.len() == 2 {
            return;
        }
    }
    panic!("20 starts all went to {used:?}");
}

#[tokio::test]
async fn the_simulators_of_a_lost_server_end_failed_naming_it_and_the_others_run_on() {
    let stack = TwoServers::start("eu-central-1").await;
    let session = stack
        .service
        .create_session(&stack.caller, NewSession::default())
        .await
        .unwrap();
    // One running simulator on each server.
    let mut on = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let started = stack
            .service
            .start_simulator(&stack.caller, &session.id, request())
            .await
            .unwrap();
        let server = started.host.clone().unwrap().id;
        match on.entry(server) {
            std::collections::btree_map::Entry::Occupied(_) => {
                // A second one there: stopped, to stay within the session's quota.
                stack
                    .service
                    .stop_simulator(&stack.caller, &session.id, &started.id)
                    .await
                    .unwrap();
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(started);
            }
        }
        if on.len() == 2 {
            break;
        }
    }
    assert_eq!(on.len(), 2, "starts never spread over both servers");

    // sim-a leaves the healthy list.
    stack
        .registry
        .set_health("sim-a", CustomHealthStatus::Unhealthy)
        .await;
    until_listed(&stack.watch, &["sim-b"]).await;

    let lost = stack
        .service
        .get_simulator(&stack.caller, &session.id, &on["sim-a"].id)
        .await
        .unwrap();
    let kept = stack
        .service
        .get_simulator(&stack.caller, &session.id, &on["sim-b"].id)
        .await
        .unwrap();

    assert_eq!(lost.status, SimulatorStatus::Failed);
    let reason = lost.reason.unwrap_or_default();
    assert!(
        reason.contains("sim-a") && reason.contains("is gone"),
        "{reason}"
    );
    assert_eq!(kept.status, SimulatorStatus::Running);
    // Read again: the failure was written once and stays.
    let again = stack
        .service
        .get_simulator(&stack.caller, &session.id, &on["sim-a"].id)
        .await
        .unwrap();
    assert_eq!(again.version, lost.version);
}

#[tokio::test]
async fn token_validation_is_balanced_over_the_healthy_auth_replicas_and_skips_a_dead_one() {
    // Two replicas of one auth service (shared keys), registered under `auth`.
    let registry = Registry::of("ap-southeast-1", Backend::Auth).await;
    let auth = AuthServer::new(AuthSettings::default()).unwrap();
    let mut replicas = Vec::new();
    for id in ["auth-a", "auth-b"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let replica = AuthServer::from_service(Arc::clone(auth.auth()))
            .spawn_on(listener)
            .unwrap();
        registry.register(id, replica.addr()).await;
        replicas.push(replica);
    }
    let resolver: Arc<dyn Resolver> = Arc::new(registry.resolver());
    let watch = Watch::spawn(
        std::future::ready(resolver),
        Backend::Auth,
        Duration::from_millis(100),
    );
    until_listed(&watch, &["auth-a", "auth-b"]).await;
    // No retries: a call sent to a dead replica would fail.
    let mut settings = Settings::default();
    settings.backends.max_retries = 0;
    let validator = GrpcTokenValidator::balanced(&settings, &watch);
    let validate_fresh_tokens = || async {
        for _ in 0..10 {
            let token = auth
                .auth()
                .issue("alice", &["sessions:read"], Duration::from_secs(60))
                .unwrap();
            let principal = validator.validate(&token).await.expect("a valid token");
            assert_eq!(principal.user.as_str(), "alice");
        }
    };
    validate_fresh_tokens().await;

    // auth-b dies and leaves the healthy list.
    replicas.pop().unwrap().kill().await.unwrap();
    registry
        .set_health("auth-b", CustomHealthStatus::Unhealthy)
        .await;
    until_listed(&watch, &["auth-a"]).await;

    validate_fresh_tokens().await;
}
