//! Persistence: studies and the rounds they ran, in SQLite (one machine, the default) or
//! PostgreSQL (several relays sharing one database).
//!
//! Only public data is stored: study specifications, round metadata (roster size, threshold,
//! safety code, times) and revealed aggregates. Never a value, a share, a sealed payload, a
//! partial sum or a key. A row is written when a round starts (`running`) and updated when it
//! completes or is abandoned, so a round that was in flight when the relay died (even by
//! SIGKILL) is found at the next start and marked abandoned with reason `relay_restarted`.
//!
//! Every method is async and returns once the change is committed: SQLite runs on its own
//! OS thread ([`sqlite`]), PostgreSQL through tokio-postgres ([`postgres`]). The lease
//! methods ([`Store::try_acquire`] …) say which relay runs a study; with SQLite the one local
//! relay always does.

mod postgres;
mod sqlite;

use std::path::Path;
use std::time::Duration;

use cohort_core::message::AbandonReason;
use cohort_core::protocol::hospital::RoundOutcome;
use cohort_core::study::StudySpec;

pub use postgres::StudyChanges;
pub use sqlite::DB_FILE;

use crate::views::{ResultRow, RoundRow};

/// The owner reported by [`Store::owner_of`] for a SQLite store: the one local relay.
pub const LOCAL_OWNER: &str = "local";

/// A storage failure. Messages carry no value, share or key (none is ever stored).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused an operation or the connection failed.
    #[error("postgres error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The data directory could not be created (or the store thread not started).
    #[error("cannot create the data directory: {0}")]
    Io(#[from] std::io::Error),
    /// A stored row could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store's thread or connection has stopped.
    #[error("the store has stopped")]
    Closed,
    /// The database URL is not a usable `postgres://` URL.
    #[error("invalid database URL: {0}")]
    Url(String),
    /// The operation exists only with PostgreSQL (e.g. LISTEN).
    #[error("not supported by the SQLite store")]
    Unsupported,
}

/// Facts about a round that has just started.
#[derive(Clone, Debug)]
pub struct RoundStart<'a> {
    /// Study id.
    pub study: &'a str,
    /// Round id.
    pub round: u64,
    /// Roster size.
    pub roster_size: u32,
    /// Threshold.
    pub threshold: u32,
    /// Safety code.
    pub safety_code: &'a str,
    /// When (Unix ms).
    pub started_at_ms: u64,
}

/// [`RoundStart`] owned, to cross to the SQLite thread.
#[derive(Clone, Debug)]
pub(crate) struct RoundStartOwned {
    pub(crate) study: String,
    pub(crate) round: u64,
    pub(crate) roster_size: u32,
    pub(crate) threshold: u32,
    pub(crate) safety_code: String,
    pub(crate) started_at_ms: u64,
}

impl From<&RoundStart<'_>> for RoundStartOwned {
    fn from(s: &RoundStart<'_>) -> Self {
        RoundStartOwned {
            study: s.study.to_owned(),
            round: s.round,
            roster_size: s.roster_size,
            threshold: s.threshold,
            safety_code: s.safety_code.to_owned(),
            started_at_ms: s.started_at_ms,
        }
    }
}

/// A [`StoreError::Corrupt`] from a value that could not be encoded or decoded.
fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A completed round as the values both backends write into its `rounds` row
/// (`status` is `'completed'`, `reason` and `message` NULL). Each backend keeps only its SQL;
/// [`completed_values!`] lists the values in the order of the columns its `INSERT` names.
struct CompletedRow<'a> {
    study: &'a str,
    round: i64,
    roster_size: i64,
    threshold: i64,
    safety_code: &'a str,
    started_at_ms: i64,
    finished_at_ms: i64,
    count: i64,
    sum: Option<f64>,
    mean: Option<f64>,
    stddev: Option<f64>,
    /// The one-question histogram as JSON (`None` for a study with `questions`).
    histogram: Option<String>,
    /// The contributors as a JSON array.
    contributors: String,
    partial_sums: i64,
    /// The questionnaire result as JSON.
    result: String,
    /// The exclusions as JSON (`None` when there are none).
    excluded: Option<String>,
}

impl<'a> CompletedRow<'a> {
    /// The row of `o`.
    fn of(o: &'a RoundOutcome) -> Result<CompletedRow<'a>, StoreError> {
        let stats = o.statistics.as_ref();
        let histogram = stats
            .map(|s| serde_json::to_string(&s.histogram))
            .transpose()
            .map_err(corrupt)?;
        let excluded = (!o.excluded.is_empty())
            .then(|| serde_json::to_string(&o.excluded))
            .transpose()
            .map_err(corrupt)?;
        Ok(CompletedRow {
            study: &o.study,
            round: o.round as i64,
            roster_size: i64::from(o.roster_size),
            threshold: i64::from(o.threshold),
            safety_code: o.safety_code.as_str(),
            started_at_ms: o.started_ms as i64,
            finished_at_ms: o.finished_ms as i64,
            count: o.questionnaire.count as i64,
            sum: stats.map(|s| s.sum),
            mean: stats.map(|s| s.mean),
            stddev: stats.map(|s| s.stddev),
            histogram,
            contributors: serde_json::to_string(&o.contributors).map_err(corrupt)?,
            partial_sums: i64::from(o.partial_sums),
            result: serde_json::to_string(&o.questionnaire).map_err(corrupt)?,
            excluded,
        })
    }
}

/// The values of a [`CompletedRow`] `$r` as an array of `$t` (the driver's parameter type),
/// in the order of the columns of both backends' `INSERT`: `study, round, roster_size,
/// threshold, safety_code, started_at_ms, finished_at_ms, count, sum, mean, stddev,
/// histogram, contributors, partial_sums, result, excluded`.
macro_rules! completed_values {
    ($r:expr, $t:ty) => {
        completed_values!(@ $r, $t; study round roster_size threshold safety_code started_at_ms
            finished_at_ms count sum mean stddev histogram contributors partial_sums result
            excluded)
    };
    (@ $r:expr, $t:ty; $($field:ident)*) => {
        [$(&$r.$field as $t),*]
    };
}
use completed_values;

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// The database: SQLite or PostgreSQL behind one async API. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Sqlite(_) => "Store(sqlite)",
            Backend::Postgres(_) => "Store(postgres)",
        })
    }
}

macro_rules! dispatch {
    ($self:ident, $sq:expr, $pg:ident => $pgexpr:expr) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.call($sq).await,
            Backend::Postgres($pg) => $pgexpr,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the SQLite database in `dir`, on its own thread.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::SqliteStore::open(dir)?),
        })
    }

    /// An in-memory SQLite database, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::SqliteStore::open_in_memory()?),
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://USER@HOST:PORT/DB`, no TLS: loopback or
    /// a trusted network) and runs the pending migrations in one transaction.
    pub async fn connect_postgres(url: &str) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Postgres(postgres::PgStore::connect(url).await?),
        })
    }

    /// `true` for a PostgreSQL store.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Stores a new study. Returns `false` (and changes nothing) if the id exists.
    pub async fn insert_study(&self, spec: &StudySpec, now_ms: u64) -> Result<bool, StoreError> {
        let owned = spec.clone();
        dispatch!(self, move |c| sqlite::insert_study(c, &owned, now_ms), p => p.insert_study(spec, now_ms).await)
    }

    /// Every stored study, oldest first.
    pub async fn studies(&self) -> Result<Vec<StudySpec>, StoreError> {
        dispatch!(self, sqlite::studies, p => p.studies().await)
    }

    /// One stored study.
    pub async fn study(&self, id: &str) -> Result<Option<StudySpec>, StoreError> {
        let owned = id.to_owned();
        dispatch!(self, move |c| sqlite::study(c, &owned), p => p.study(id).await)
    }

    /// The first round id a new run of the study must use: one past every round ever started.
    pub async fn next_round(&self, study: &str) -> Result<u64, StoreError> {
        let owned = study.to_owned();
        dispatch!(self, move |c| sqlite::next_round(c, &owned), p => p.next_round(study).await)
    }

    /// Number of completed rounds of the study.
    pub async fn completed_count(&self, study: &str) -> Result<u64, StoreError> {
        let owned = study.to_owned();
        dispatch!(self, move |c| sqlite::completed_count(c, &owned), p => p.completed_count(study).await)
    }

    /// Records a round that has started.
    pub async fn round_started(&self, s: &RoundStart<'_>) -> Result<(), StoreError> {
        let owned = RoundStartOwned::from(s);
        dispatch!(self, move |c| sqlite::round_started(c, &owned), p => p.round_started(&RoundStartOwned::from(s)).await)
    }

    /// Records a completed round and its revealed statistics.
    pub async fn round_completed(&self, o: &RoundOutcome) -> Result<(), StoreError> {
        let owned = o.clone();
        dispatch!(self, move |c| sqlite::round_completed(c, &owned), p => p.round_completed(o).await)
    }

    /// Records that a round was abandoned.
    pub async fn round_abandoned(
        &self,
        study: &str,
        round: u64,
        reason: &AbandonReason,
        finished_at_ms: u64,
    ) -> Result<(), StoreError> {
        let (s, r) = (study.to_owned(), reason.clone());
        dispatch!(self, move |c| sqlite::round_abandoned(c, &s, round, &r, finished_at_ms),
            p => p.round_abandoned(study, round, reason, finished_at_ms).await)
    }

    /// Marks every round still `running` as abandoned with reason `relay_restarted`: they
    /// were in flight when the relay stopped without finishing them. Returns how many.
    ///
    /// With PostgreSQL this touches every study: call it only when no other relay runs (one
    /// relay), or use [`Store::abandon_in_flight_of`] for a study whose lease was just taken.
    pub async fn abandon_in_flight(&self, now_ms: u64) -> Result<usize, StoreError> {
        dispatch!(self, move |c| sqlite::abandon_in_flight(c, now_ms), p => p.abandon_in_flight(None, now_ms).await)
    }

    /// Like [`Store::abandon_in_flight`] for one study (a new owner taking over).
    pub async fn abandon_in_flight_of(
        &self,
        study: &str,
        now_ms: u64,
    ) -> Result<usize, StoreError> {
        let owned = study.to_owned();
        dispatch!(self, move |c| sqlite::abandon_in_flight_of(c, &owned, now_ms),
            p => p.abandon_in_flight(Some(study), now_ms).await)
    }

    /// Completed rounds of a study, oldest first.
    pub async fn results(&self, study: &str) -> Result<Vec<ResultRow>, StoreError> {
        let owned = study.to_owned();
        dispatch!(self, move |c| sqlite::results(c, &owned), p => Ok(completed_results(p.rounds(study).await?)))
    }

    /// Completed and abandoned rounds of a study (and a running one, if any), oldest first.
    pub async fn rounds(&self, study: &str) -> Result<Vec<RoundRow>, StoreError> {
        let owned = study.to_owned();
        dispatch!(self, move |c| sqlite::rounds(c, &owned), p => p.rounds(study).await)
    }

    /// Takes the lease on `study` for `owner` for `ttl` if it is free, expired, or already
    /// `owner`'s (then it is extended). Returns whether `owner` now holds it. Expiry is on the
    /// database's clock, so relays' clocks need not agree. SQLite: always `true`.
    pub async fn try_acquire(
        &self,
        study: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(p) => p.try_acquire(study, owner, ttl).await,
        }
    }

    /// Extends `owner`'s unexpired lease on `study` by `ttl` from now. `false` if `owner`
    /// does not hold it any more (expired or taken): the owner must stop the study at once.
    /// SQLite: always `true`.
    pub async fn renew(&self, study: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(p) => p.renew(study, owner, ttl).await,
        }
    }

    /// Gives up `owner`'s lease on `study` (no effect if someone else holds it). Returns
    /// whether a lease was released. SQLite: `true`.
    pub async fn release(&self, study: &str, owner: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(p) => p.release(study, owner).await,
        }
    }

    /// The current (unexpired) owner of `study`, if any. SQLite: [`LOCAL_OWNER`].
    pub async fn owner_of(&self, study: &str) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(LOCAL_OWNER.to_owned())),
            Backend::Postgres(p) => p.owner_of(study).await,
        }
    }

    /// Tells every listener (every relay) that a result or status of `study` changed. The
    /// notification carries the study id only. SQLite: nothing to tell, `Ok`.
    pub async fn notify_changed(&self, study: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.notify_changed(study).await,
        }
    }

    /// A stream of study ids whose results or status changed (LISTEN on a dedicated
    /// connection). SQLite: [`StoreError::Unsupported`].
    pub async fn listen_changes(&self) -> Result<StudyChanges, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(StoreError::Unsupported),
            Backend::Postgres(p) => p.listen().await,
        }
    }
}

/// The completed rounds among `rows`, as results.
pub(crate) fn completed_results(rows: Vec<RoundRow>) -> Vec<ResultRow> {
    rows.into_iter().filter_map(RoundRow::result).collect()
}
