//! Helpers for the PostgreSQL backend's unit tests: one throwaway cluster per test process (the
//! harness's `tests/common/postgres.rs`), a database of its own per test.

#[path = "../../../tests/common/postgres.rs"]
mod cluster;

use std::sync::OnceLock;

pub(crate) use cluster::PgCluster;

use super::{DatabaseUrl, Postgres};

/// The test process's cluster (fsync off: these tests are not about durability). Never dropped: the
/// reaper started with it stops it when the test process exits.
pub(crate) fn cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = PgCluster::start(false).expect("a throwaway PostgreSQL cluster");
        cluster.reap_when_gone(std::process::id());
        cluster
    })
}

/// A fresh database's URL.
pub(crate) fn database() -> DatabaseUrl {
    DatabaseUrl::parse(&cluster().new_database().expect("a database")).expect("its URL")
}

/// A store on a fresh database.
pub(crate) fn store() -> (Postgres, DatabaseUrl) {
    let url = database();
    (Postgres::open(&url).expect("opening the store"), url)
}
