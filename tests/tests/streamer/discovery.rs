//! Service discovery on the local stack: the embedded Cloud Map registry answering a real
//! `aws-sdk-servicediscovery` client, the same registration on moto's Cloud Map, and
//! `POST /_local/faults` killing and restoring backend servers (their port, their health in the
//! registry).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::error::ProvideErrorMetadata as _;
use aws_sdk_servicediscovery::types::{CustomHealthStatus, HealthStatusFilter};
use reqwest::StatusCode;
use serde_json::{Value, json};
use session_core::discovery::CloudMapResolver;
use session_local::cloudmap::{CloudMapApi, Registrar, Registry, service_id};
use session_proto::simulator::v1 as pb;
use session_tests::moto::Moto;
use session_tests::test_api::TestApi;
use tokio::net::TcpListener;

const NAMESPACE: &str = "session.internal";

/// A registry with the stack's two services on a free port, and an SDK client of it.
async fn registry() -> (CloudMapApi, Client) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = CloudMapApi::spawn(
        listener,
        Arc::new(Registry::new(NAMESPACE, &["simulator", "auth"])),
    )
    .unwrap();
    let client = CloudMapResolver::local_client(&api.endpoint(), None);
    (api, client)
}

/// `(instance id, health status)` of every instance `filter` lets through.
async fn discover(
    client: &Client,
    namespace: &str,
    service: &str,
    filter: HealthStatusFilter,
) -> Vec<(String, String)> {
    let out = client
        .discover_instances()
        .namespace_name(namespace)
        .service_name(service)
        .health_status(filter)
        .send()
        .await
        .unwrap();
    out.instances()
        .iter()
        .map(|i| {
            (
                i.instance_id().unwrap().to_owned(),
                i.health_status().unwrap().as_str().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_registry_answers_a_real_sdk_client_with_healthy_instances_only() {
    let (_api, client) = registry().await;
    let simulator = service_id("simulator");
    for (id, port) in [
        ("simulator-server-1", "5001"),
        ("simulator-server-2", "5002"),
    ] {
        client
            .register_instance()
            .service_id(&simulator)
            .instance_id(id)
            .creator_request_id(id)
            .attributes("AWS_INSTANCE_IPV4", "127.0.0.1")
            .attributes("AWS_INSTANCE_PORT", port)
            .attributes("zone", "local-a")
            .send()
            .await
            .unwrap();
    }

    let both = discover(&client, NAMESPACE, "simulator", HealthStatusFilter::Healthy).await;
    client
        .update_instance_custom_health_status()
        .service_id(&simulator)
        .instance_id("simulator-server-1")
        .status(CustomHealthStatus::Unhealthy)
        .send()
        .await
        .unwrap();
    let healthy = discover(&client, NAMESPACE, "simulator", HealthStatusFilter::Healthy).await;
    let all = discover(&client, NAMESPACE, "simulator", HealthStatusFilter::All).await;
    client
        .deregister_instance()
        .service_id(&simulator)
        .instance_id("simulator-server-2")
        .send()
        .await
        .unwrap();
    let after_deregister = discover(&client, NAMESPACE, "simulator", HealthStatusFilter::All).await;
    let attributes = client
        .discover_instances()
        .namespace_name(NAMESPACE)
        .service_name("simulator")
        .send()
        .await
        .unwrap()
        .instances()[0]
        .attributes()
        .cloned()
        .unwrap();

    let pair = |id: &str, status: &str| (id.to_owned(), status.to_owned());
    assert_eq!(
        both,
        [
            pair("simulator-server-1", "HEALTHY"),
            pair("simulator-server-2", "HEALTHY")
        ]
    );
    assert_eq!(healthy, [pair("simulator-server-2", "HEALTHY")]);
    assert_eq!(
        all,
        [
            pair("simulator-server-1", "UNHEALTHY"),
            pair("simulator-server-2", "HEALTHY")
        ]
    );
    assert_eq!(after_deregister, [pair("simulator-server-1", "UNHEALTHY")]);
    assert_eq!(
        attributes,
        BTreeMap::from([
            ("AWS_INSTANCE_IPV4".to_owned(), "127.0.0.1".to_owned()),
            ("AWS_INSTANCE_PORT".to_owned(), "5001".to_owned()),
            ("zone".to_owned(), "local-a".to_owned()),
        ])
        .into_iter()
        .collect()
    );
}

#[tokio::test]
async fn the_registry_refuses_unknown_services_and_operations_in_the_aws_error_shape() {
    let (api, client) = registry().await;

    let missing = client
        .discover_instances()
        .namespace_name(NAMESPACE)
        .service_name("billing")
        .send()
        .await
        .unwrap_err();
    let unknown = reqwest::Client::new()
        .post(api.endpoint())
        .header("x-amz-target", "Route53AutoNaming_v20170314.CreateService")
        .header("content-type", "application/x-amz-json-1.1")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = unknown.status();
    let body: Value = unknown.json().await.unwrap();

    assert_eq!(missing.code(), Some("ServiceNotFound"), "{missing:?}");
    assert!(missing.message().unwrap().contains("billing"));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["__type"], "UnknownOperationException");
    assert!(
        body["message"].as_str().unwrap().contains("CreateService"),
        "{body}"
    );
}

#[tokio::test]
async fn the_stack_registers_the_same_way_in_motos_cloud_map() {
    let moto = Moto::shared();
    // A namespace of its own: moto is shared by the tests of this binary.
    let namespace = format!(
        "test-{}.internal",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let registrar = Registrar::external(moto.endpoint(), &namespace, &["simulator", "auth"])
        .await
        .unwrap();
    let client = CloudMapResolver::local_client(moto.endpoint(), None);
    let addr = "127.0.0.1:6001".parse().unwrap();

    registrar
        .register("simulator", "simulator-server-1", addr, "local-a")
        .await
        .unwrap();
    registrar
        .register(
            "simulator",
            "simulator-server-2",
            "127.0.0.1:6002".parse().unwrap(),
            "local-b",
        )
        .await
        .unwrap();
    registrar
        .set_health("simulator", "simulator-server-1", false)
        .await
        .unwrap();
    let healthy = discover(
        &client,
        &namespace,
        "simulator",
        HealthStatusFilter::Healthy,
    )
    .await;
    registrar
        .set_health("simulator", "simulator-server-1", true)
        .await
        .unwrap();
    let again = discover(
        &client,
        &namespace,
        "simulator",
        HealthStatusFilter::Healthy,
    )
    .await;
    // Set up again on the same namespace: found, not created twice.
    let second = Registrar::external(moto.endpoint(), &namespace, &["simulator", "auth"]).await;

    let ids = |list: &[(String, String)]| list.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&healthy), ["simulator-server-2"]);
    let mut again = ids(&again);
    again.sort();
    assert_eq!(again, ["simulator-server-1", "simulator-server-2"]);
    assert!(second.is_ok(), "{second:?}");
}

/// `POST /_local/faults` with `body`: the status and the JSON answer.
async fn fault(api: &TestApi, body: &Value) -> (StatusCode, Value) {
    let answer = reqwest::Client::new()
        .post(&api.stack.endpoints().faults_url)
        .json(body)
        .send()
        .await
        .unwrap();
    (answer.status(), answer.json().await.unwrap())
}

#[tokio::test]
async fn a_killed_server_cuts_its_streams_refuses_connections_and_is_unhealthy_until_restored() {
    let api = TestApi::spawn_stack(|stack| stack.simulator_servers = 2).await;
    let endpoints = api.stack.endpoints().clone();
    let client = CloudMapResolver::local_client(&endpoints.cloudmap, None);
    let second = endpoints.simulator_servers[1].clone();
    let server = api.stack.fleet().simulator(2).unwrap();
    let started = server
        .control_client()
        .start(pb::StartRequest {
            symbols: vec!["BTC-USD".into()],
            seed: 3,
            events_per_second: 200,
            client_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = server
        .market_data_client()
        .subscribe(pb::SubscribeRequest {
            simulator_id: started.simulator_id.clone(),
            resume_from: None,
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().expect("a first event");
    let before = discover(&client, NAMESPACE, "simulator", HealthStatusFilter::Healthy).await;

    let (killed, killed_state) = fault(
        &api,
        &json!({"target": "simulator-server-2", "fault": "kill"}),
    )
    .await;
    // Whatever was in flight may still arrive; then the stream fails, with no final status.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(event)) => assert!(
                    !matches!(event.kind, Some(pb::market_event::Kind::Status(_))),
                    "a killed server sends no final status: {event:?}"
                ),
                other => break other,
            }
        }
    })
    .await
    .expect("the stream ends at once");
    let while_killed = discover(&client, NAMESPACE, "simulator", HealthStatusFilter::Healthy).await;
    let connect = tokio::net::TcpStream::connect(second.trim_start_matches("http://")).await;
    let (restored, restored_state) = fault(
        &api,
        &json!({"target": "simulator-server-2", "fault": "restore"}),
    )
    .await;
    let after = discover(&client, NAMESPACE, "simulator", HealthStatusFilter::Healthy).await;
    let listed = api
        .stack
        .fleet()
        .simulator(2)
        .unwrap()
        .control_client()
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(killed, StatusCode::OK, "{killed_state}");
    assert_eq!(killed_state["up"], false);
    assert!(ended.is_err(), "the stream fails: {ended:?}");
    assert_eq!(
        while_killed,
        [("simulator-server-1".to_owned(), "HEALTHY".to_owned())]
    );
    assert!(connect.is_err(), "the killed server's port refuses");
    assert_eq!(restored, StatusCode::OK, "{restored_state}");
    assert_eq!(restored_state["up"], true);
    assert_eq!(
        restored_state["address"],
        second.trim_start_matches("http://")
    );
    assert_eq!(after, before, "healthy again, on the same address");
    assert!(
        listed.simulators.is_empty(),
        "a restored server starts empty, as a restarted process: {listed:?}"
    );
}

#[tokio::test]
async fn the_auth_service_comes_back_with_the_same_keys_so_tokens_stay_valid() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");

    let (killed, _) = fault(&api, &json!({"target": "auth-service", "fault": "kill"})).await;
    let (restored, _) = fault(&api, &json!({"target": "auth-service", "fault": "restore"})).await;
    let session = alice.post("/v1/sessions", &json!({})).await;

    assert_eq!(killed, StatusCode::OK);
    assert_eq!(restored, StatusCode::OK);
    assert_eq!(session.status, StatusCode::CREATED, "{session:?}");
}

#[tokio::test]
async fn a_fault_request_naming_no_target_or_fault_is_refused_with_the_field_named() {
    let api = TestApi::spawn().await;

    let (target_status, target) = fault(
        &api,
        &json!({"target": "simulator-server-9", "fault": "kill"}),
    )
    .await;
    let (fault_status, bad_fault) =
        fault(&api, &json!({"target": "auth-service", "fault": "explode"})).await;
    let (shape_status, shape) = fault(&api, &json!({"target": "auth-service"})).await;
    let listed: Value = reqwest::get(&api.stack.endpoints().faults_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(target_status, StatusCode::BAD_REQUEST);
    let message = target["message"].as_str().unwrap();
    assert!(message.starts_with("target:"), "{message}");
    assert!(message.contains("simulator-server-1"), "{message}");
    assert_eq!(fault_status, StatusCode::BAD_REQUEST);
    assert!(
        bad_fault["message"].as_str().unwrap().starts_with("fault:"),
        "{bad_fault}"
    );
    assert_eq!(shape_status, StatusCode::BAD_REQUEST);
    assert!(
        shape["message"].as_str().unwrap().contains("fault"),
        "{shape}"
    );
    assert_eq!(listed[0]["target"], "simulator-server-1");
    assert_eq!(listed[0]["zone"], "local-a");
    assert_eq!(listed[1]["target"], "auth-service");
    assert_eq!(listed[1]["up"], true);
}

/// One simulator of the end-to-end test: its owner, session, id, seed (how the simulator
/// servers' own lists name it) and SSE stream.
struct Started {
    user: session_tests::test_api::User,
    session: String,
    id: String,
    seed: u64,
}

/// Starts a simulator with `seed` in a new session of a new user; answers it once running, or
/// the status it ended in.
async fn start(api: &TestApi, seed: u64) -> Result<Started, String> {
    let user = api.user(&format!("user-{seed}"));
    let session = user.create_session().await;
    let answer = user
        .post(
            &format!("/v1/sessions/{session}/simulators"),
            &json!({"symbols": ["BTC-USD"], "seed": seed, "events_per_second": 100}),
        )
        .await;
    if answer.status != StatusCode::ACCEPTED {
        return Err(format!("{answer:?}"));
    }
    let id = answer.body["simulator_id"].as_str().unwrap().to_owned();
    match user
        .wait_for_simulator(&session, &id, "running")
        .await
        .as_str()
    {
        "running" => Ok(Started {
            user,
            session,
            id,
            seed,
        }),
        other => Err(other.to_owned()),
    }
}

/// The seeds of the instances simulator server `index` runs.
async fn seeds_on(api: &TestApi, index: usize) -> Vec<u64> {
    let listed = api
        .stack
        .fleet()
        .simulator(index)
        .unwrap()
        .control_client()
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    listed.simulators.iter().map(|s| s.seed).collect()
}

/// An SSE stream of `started`'s session, through a ticket.
async fn open_stream(started: &Started) -> session_tests::sse::SseStream {
    let answer = started
        .user
        .post(
            &format!("/v1/sessions/{}/tickets", started.session),
            &json!({"transport": "sse"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    session_tests::sse::connect(answer.body["url"].as_str().unwrap(), &[])
        .await
        .expect("the stream opens")
}

/// Reads `stream` into `replica` (which panics on a gap) until `count` more events came.
async fn read_events(
    stream: &mut session_tests::sse::SseStream,
    replica: &mut session_tests::book_replica::Replica,
    count: usize,
) {
    let target = replica.events + count;
    while replica.events < target {
        let event = stream
            .next(Duration::from_secs(10))
            .await
            .expect("the stream goes on");
        replica.apply(&event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_servers_fails_its_simulators_and_leaves_the_others_streaming() {
    const REFRESH: Duration = Duration::from_millis(300);
    let api = TestApi::spawn_stack(|stack| {
        stack.simulator_servers = 2;
        stack.service.discovery.refresh_ms = REFRESH;
        session_tests::stream_fixture::reconnect_without_limits(&mut stack.service);
    })
    .await;
    // Started together: the balancer sees the starts in flight and spreads them.
    let started: Vec<Started> =
        futures_util::future::join_all((1..=8).map(|seed| start(&api, seed)))
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("every simulator runs");
    let (on_first, on_second) = (seeds_on(&api, 1).await, seeds_on(&api, 2).await);
    let mut streams = Vec::new();
    for simulator in &started {
        let mut stream = open_stream(simulator).await;
        let mut replica = session_tests::book_replica::Replica::default();
        read_events(&mut stream, &mut replica, 5).await;
        streams.push((stream, replica));
    }

    let (killed, _) = fault(
        &api,
        &json!({"target": "simulator-server-1", "fault": "kill"}),
    )
    .await;
    let killed_at = tokio::time::Instant::now();
    // A new start lands on the survivor once discovery has dropped the killed server.
    let mut replacement = None;
    for seed in 100..120 {
        if let Ok(started) = start(&api, seed).await {
            replacement = Some((started, killed_at.elapsed()));
            break;
        }
        tokio::time::sleep(REFRESH / 4).await;
    }
    let (replacement, took) = replacement.expect("a new start succeeds");
    // The survivors' streams: 100 more events each, gapless (the replica checks every id).
    for ((stream, replica), simulator) in streams.iter_mut().zip(&started) {
        if on_second.contains(&simulator.seed) {
            read_events(stream, replica, 100).await;
        }
    }
    let mut lost = Vec::new();
    for simulator in started.iter().filter(|s| on_first.contains(&s.seed)) {
        let path = format!(
            "/v1/sessions/{}/simulators/{}",
            simulator.session, simulator.id
        );
        let status = simulator
            .user
            .wait_for_simulator(&simulator.session, &simulator.id, "failed")
            .await;
        lost.push((
            status,
            simulator.user.get(&path).await.body["reason"].clone(),
        ));
    }
    let mut survivors = Vec::new();
    for simulator in started.iter().filter(|s| on_second.contains(&s.seed)) {
        survivors.push(
            simulator
                .user
                .wait_for_simulator(&simulator.session, &simulator.id, "running")
                .await,
        );
    }

    assert!(
        !on_first.is_empty() && !on_second.is_empty(),
        "the starts spread over both servers: {on_first:?} and {on_second:?}"
    );
    assert_eq!(on_first.len() + on_second.len(), started.len());
    assert_eq!(killed, StatusCode::OK);
    for ((_, replica), simulator) in streams.iter().zip(&started) {
        if on_second.contains(&simulator.seed) {
            assert_eq!(replica.resets, 0, "a survivor's stream never reset");
            assert!(replica.events >= 105);
        }
    }
    assert!(survivors.iter().all(|s| s == "running"), "{survivors:?}");
    for (status, reason) in &lost {
        assert_eq!(status, "failed", "{reason}");
        let reason = reason.as_str().unwrap_or_default();
        assert!(
            reason.contains("simulator-server-1") && reason.contains("gone"),
            "{reason}"
        );
    }
    assert!(
        seeds_on(&api, 2).await.contains(&replacement.seed),
        "the new simulator runs on the survivor"
    );
    // Within one refresh, plus a failed attempt on the dead server and the REST round trips of
    // a start (a session, the start, its status polls at 50 ms): 5 ms to 200 ms measured.
    assert!(
        took < REFRESH + Duration::from_secs(1),
        "a new start succeeded {took:?} after the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_pushed_the_events_of_a_simulator_on_a_server_other_than_the_static_one() {
    const REFRESH: Duration = Duration::from_millis(300);
    let api = TestApi::spawn_stack(|stack| {
        stack.simulator_servers = 2;
        stack.service.discovery.refresh_ms = REFRESH;
        stack.streamer.push_poll_ms = Duration::from_millis(100);
        session_tests::stream_fixture::reconnect_without_limits(&mut stack.service);
    })
    .await;
    // The static server (`backends.simulator_url`) is the first: with it gone, the start lands
    // on the second, which only discovery knows.
    let (killed, _) = fault(
        &api,
        &json!({"target": "simulator-server-1", "fault": "kill"}),
    )
    .await;
    assert_eq!(killed, StatusCode::OK);
    let mut started = None;
    for seed in 1..20 {
        if let Ok(running) = start(&api, seed).await {
            started = Some(running);
            break;
        }
        tokio::time::sleep(REFRESH / 4).await;
    }
    let started = started.expect("a start succeeds on the second server");
    assert_eq!(seeds_on(&api, 2).await, vec![started.seed]);

    let url = started.user.ws_ticket(&started.session).await.1;
    let mut client = crate::ws::WsClient::open(&url).await;
    let first = client.next().await;

    assert_eq!(
        first.event, "snapshot",
        "the push is fed from the hosting server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulator_server_registers_itself_in_cloud_map_and_leaves_it_on_sigterm() {
    let moto = Moto::shared();
    let namespace = format!(
        "test-{}.internal",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    // A service name of its own too: moto looks services up by name across namespaces, and the
    // other tests of this binary register `simulator`s in theirs at the same time.
    let service = format!("simulator-{}", ulid::Ulid::new().to_string().to_lowercase());
    let registrar = Registrar::external(moto.endpoint(), &namespace, &[service.as_str()])
        .await
        .unwrap();
    let client = CloudMapResolver::local_client(moto.endpoint(), None);
    let instance = "exchange-simulator-7d9f";
    // What the Deployment sets (infra/k8s/components/simulator-registration), and moto as AWS.
    // The registered port is the Service's, not necessarily the one it listens on: nothing
    // here dials it, and a port picked free then released could be another test's by now.
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_exchange-simulator-process"))
        .args(["--listen", "127.0.0.1:0"])
        .env("CLOUDMAP_SERVICE", &service)
        .env(
            "CLOUDMAP_SERVICE_ID",
            registrar.service_id(&service).unwrap(),
        )
        .env("CLOUDMAP_INSTANCE_ID", instance)
        .env("AWS_INSTANCE_IPV4", "127.0.0.1")
        .env("AWS_INSTANCE_PORT", "50051")
        .env("CLOUDMAP_ZONE", "local-a")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .kill_on_drop(true)
        .spawn()
        .expect("the exchange simulator starts");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let registered = loop {
        let healthy = discover(&client, &namespace, &service, HealthStatusFilter::Healthy).await;
        if !healthy.is_empty() || tokio::time::Instant::now() > deadline {
            break healthy;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pid = server.id().expect("a running process").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), server.wait())
        .await
        .expect("the server stops within 20 s of SIGTERM")
        .unwrap();
    let left = discover(&client, &namespace, &service, HealthStatusFilter::All).await;

    assert_eq!(registered, [(instance.to_owned(), "HEALTHY".to_owned())]);
    assert!(signalled.success() && exit.success(), "{exit:?}");
    assert!(left.is_empty(), "deregistered on SIGTERM: {left:?}");
}
