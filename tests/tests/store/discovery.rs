//! The server hosting a simulator (service discovery): an optional part of its record, kept
//! by every adapter, absent from records written without it.

use session_core::domain::{Simulator, SimulatorHost, SimulatorStatus};

use crate::helpers::{Harness, quotas};

pub async fn a_simulator_keeps_its_hosting_server_and_one_without_reads_as_the_static_one(
    h: Harness,
) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let host = SimulatorHost {
        id: "sim-a".into(),
        address: "10.0.0.7:50051".into(),
    };
    let hosted = Simulator {
        host: Some(host.clone()),
        ..h.simulator(&session)
    };
    let unhosted = h.simulator(&session);
    for simulator in [&hosted, &unhosted] {
        h.store
            .create_simulator(simulator, &session.owner, quotas(4))
            .await
            .unwrap();
    }

    let running = hosted
        .transition(SimulatorStatus::Running, None, h.now())
        .unwrap();
    h.store.update_simulator(&hosted, &running).await.unwrap();

    let read = h
        .store
        .get_simulator(&session.id, &hosted.id)
        .await
        .unwrap();
    assert_eq!(read.and_then(|s| s.host), Some(host));
    let read = h
        .store
        .get_simulator(&session.id, &unhosted.id)
        .await
        .unwrap();
    assert_eq!(read.map(|s| s.host), Some(None));
}
