//! The throw-away PostgreSQL cluster of the store and cluster tests:
//! [`cohort_relay::pg_cluster::PgCluster`] (feature `test-util`, which the tests enable) in a
//! temp dir, the test failing if it cannot start.

use cohort_relay::pg_cluster::PgCluster;

/// Starts a cluster in a fresh temp dir named after `name`; panics if it cannot.
pub(crate) fn start(name: &str) -> PgCluster {
    PgCluster::start_temp(name).unwrap_or_else(|e| panic!("{e}"))
}
