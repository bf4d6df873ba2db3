//! Two regions of one deployment, `a` (the primary) and `b`, as the REST suites set them up: each
//! a local stack with its own `regions.this`, both on one table of moto's server (a global table
//! with no replication lag).

use std::collections::BTreeMap;

use session_core::config::{Settings, StoreBackend};
use session_core::domain::RegionName;
use session_local::regions::Regions;
use session_local::stack::StackSettings;

use crate::moto::Moto;
use crate::test_api::TestApi;

/// Region `a`'s HTTP API, as `regions.apis` names it.
pub const API_A: &str = "https://api.a.example.com";
/// Region `b`'s HTTP API, as `regions.apis` names it.
pub const API_B: &str = "https://api.b.example.com";

/// The region named `name`.
///
/// # Panics
/// `name` is not a valid region name.
pub fn region(name: &str) -> RegionName {
    RegionName::parse("region", name).expect("a valid region name")
}

/// The local stack as region `this` of the deployment {a (primary), b}, on `table` of moto,
/// with `configure` applied last.
pub async fn region_stack(
    this: &str,
    table: &str,
    configure: impl FnOnce(&mut Settings) + Send + 'static,
) -> TestApi {
    let (this, table) = (this.to_owned(), table.to_owned());
    Box::pin(TestApi::spawn_with(move |s| {
        s.store.backend = StoreBackend::Dynamodb;
        s.store.endpoint = Some(Moto::shared().endpoint().to_owned());
        s.store.table_name = table;
        s.regions.this = region(&this);
        s.regions.primary = Some(region("a"));
        s.regions.apis = BTreeMap::from([
            (region("a"), API_A.to_owned()),
            (region("b"), API_B.to_owned()),
        ]);
        configure(s);
    }))
    .await
}

/// `session-local --regions 2` in this process (`local-a`, the primary, and `local-b`) on free
/// ports, `lag` between the replicas, the backends retried fast; the endpoints file written to
/// `endpoints_file` if given.
///
/// # Panics
/// The regions do not start.
pub async fn two_local_regions(
    lag: std::time::Duration,
    endpoints_file: Option<std::path::PathBuf>,
) -> Regions {
    let mut service = Settings::default();
    service.backends.retry_base_ms = std::time::Duration::from_millis(5);
    let settings = StackSettings {
        endpoints_file,
        ..StackSettings::ephemeral(service)
    };
    Regions::start(settings, 2, lag)
        .await
        .expect("two regions start")
}
