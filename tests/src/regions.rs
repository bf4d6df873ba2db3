//! Two regions of one deployment, `a` (the primary) and `b`, as the REST suites set them up: each
//! a local stack with its own `regions.this`, both on one table of moto's server (a global table
//! with no replication lag).

use std::collections::BTreeMap;

use session_core::config::{Settings, StoreBackend};
use session_core::domain::RegionName;

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
