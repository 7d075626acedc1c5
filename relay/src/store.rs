//! Persistence: studies and the rounds they ran, in SQLite.
//!
//! Only public data is stored: study specifications, round metadata (roster size, threshold,
//! safety code, times) and revealed aggregates. Never a value, a share, a sealed payload, a
//! partial sum or a key. A row is written when a round starts (`running`) and updated when it
//! completes or is abandoned, so a round that was in flight when the relay died (even by
//! SIGKILL) is found at the next start and marked abandoned with reason `relay_restarted`.
//!
//! Each change is one transaction in WAL mode: once a call returns, the row survives the
//! process being killed.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use cohort_core::message::AbandonReason;
use cohort_core::protocol::hospital::RoundOutcome;
use cohort_core::study::StudySpec;
use rusqlite::{Connection, OptionalExtension, params};

use crate::views::{ResultRow, RoundRow, reason_kind};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "cohort.sqlite3";

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be created.
    #[error("cannot create the data directory: {0}")]
    Io(#[from] std::io::Error),
    /// A stored row could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// The database. Cheap calls; each write is its own transaction.
pub struct Store {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS studies (
    id            TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    study          TEXT NOT NULL REFERENCES studies(id),
    round          INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'completed', 'abandoned')),
    reason         TEXT,
    message        TEXT,
    roster_size    INTEGER NOT NULL,
    threshold      INTEGER NOT NULL,
    safety_code    TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    count          INTEGER,
    sum            REAL,
    mean           REAL,
    stddev         REAL,
    histogram      TEXT,
    contributors   TEXT,
    partial_sums   INTEGER,
    PRIMARY KEY (study, round)
);
PRAGMA user_version = 1;
";

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

impl Store {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        Store::init(conn)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: a committed transaction is in the log file before the call returns, so it
        // survives the process being killed; NORMAL skips the fsync per commit (power loss
        // may lose the last commits, a process kill does not).
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (each statement is
        // atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a new study. Returns `false` (and changes nothing) if the id exists.
    pub fn insert_study(&self, spec: &StudySpec, now_ms: u64) -> Result<bool, StoreError> {
        let json = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO studies (id, spec, created_at_ms) VALUES (?1, ?2, ?3)",
            params![spec.params.id, json, now_ms as i64],
        )?;
        Ok(n == 1)
    }

    /// Every stored study, oldest first.
    pub fn studies(&self) -> Result<Vec<StudySpec>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT spec FROM studies ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            let spec: StudySpec =
                serde_json::from_str(&json?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(spec);
        }
        Ok(out)
    }

    /// One stored study.
    pub fn study(&self, id: &str) -> Result<Option<StudySpec>, StoreError> {
        let json: Option<String> = self
            .conn()
            .query_row("SELECT spec FROM studies WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// The first round id a new run of the study must use: one past every round ever started.
    pub fn next_round(&self, study: &str) -> Result<u64, StoreError> {
        let max: Option<i64> = self.conn().query_row(
            "SELECT MAX(round) FROM rounds WHERE study = ?1",
            [study],
            |r| r.get(0),
        )?;
        Ok(max.map_or(1, |m| m as u64 + 1))
    }

    /// Number of completed rounds of the study.
    pub fn completed_count(&self, study: &str) -> Result<u64, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM rounds WHERE study = ?1 AND status = 'completed'",
            [study],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Records a round that has started.
    pub fn round_started(&self, s: &RoundStart<'_>) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO rounds
               (study, round, status, roster_size, threshold, safety_code, started_at_ms)
             VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6)",
            params![
                s.study,
                s.round as i64,
                s.roster_size,
                s.threshold,
                s.safety_code,
                s.started_at_ms as i64
            ],
        )?;
        Ok(())
    }

    /// Records a completed round and its revealed statistics.
    pub fn round_completed(&self, o: &RoundOutcome) -> Result<(), StoreError> {
        let histogram = serde_json::to_string(&o.statistics.histogram)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let contributors = serde_json::to_string(&o.contributors)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn().execute(
            "INSERT OR REPLACE INTO rounds
               (study, round, status, reason, message, roster_size, threshold, safety_code,
                started_at_ms, finished_at_ms, count, sum, mean, stddev, histogram,
                contributors, partial_sums)
             VALUES (?1, ?2, 'completed', NULL, NULL, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                     ?12, ?13, ?14)",
            params![
                o.study,
                o.round as i64,
                o.roster_size,
                o.threshold,
                o.safety_code.as_str(),
                o.started_ms as i64,
                o.finished_ms as i64,
                o.statistics.count as i64,
                o.statistics.sum,
                o.statistics.mean,
                o.statistics.stddev,
                histogram,
                contributors,
                o.partial_sums,
            ],
        )?;
        Ok(())
    }

    /// Records that a round was abandoned.
    pub fn round_abandoned(
        &self,
        study: &str,
        round: u64,
        reason: &AbandonReason,
        finished_at_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE rounds SET status = 'abandoned', reason = ?3, message = ?4, finished_at_ms = ?5
             WHERE study = ?1 AND round = ?2",
            params![
                study,
                round as i64,
                reason_kind(reason),
                reason.to_string(),
                finished_at_ms as i64
            ],
        )?;
        Ok(())
    }

    /// Marks every round still `running` as abandoned with reason `relay_restarted`: they
    /// were in flight when the relay stopped without finishing them. Returns how many.
    pub fn abandon_in_flight(&self, now_ms: u64) -> Result<usize, StoreError> {
        let reason = AbandonReason::RelayRestarted;
        let n = self.conn().execute(
            "UPDATE rounds SET status = 'abandoned', reason = ?1, message = ?2, finished_at_ms = ?3
             WHERE status = 'running'",
            params![reason_kind(&reason), reason.to_string(), now_ms as i64],
        )?;
        Ok(n)
    }

    /// Completed rounds of a study, oldest first.
    pub fn results(&self, study: &str) -> Result<Vec<ResultRow>, StoreError> {
        Ok(self
            .rounds(study)?
            .into_iter()
            .filter_map(|r| {
                Some(ResultRow {
                    count: r.count?,
                    sum: r.sum?,
                    mean: r.mean?,
                    stddev: r.stddev?,
                    histogram: r.histogram?,
                    bucket_edges: r.bucket_edges?,
                    contributors: r.contributors?,
                    partial_sums: r.partial_sums?,
                    finished_at_ms: r.finished_at_ms?,
                    study: r.study,
                    round: r.round,
                    roster_size: r.roster_size,
                    threshold: r.threshold,
                    safety_code: r.safety_code,
                    started_at_ms: r.started_at_ms,
                })
                .filter(|_| r.status == "completed")
            })
            .collect())
    }

    /// Completed and abandoned rounds of a study (and a running one, if any), oldest first.
    pub fn rounds(&self, study: &str) -> Result<Vec<RoundRow>, StoreError> {
        let edges = self.study(study)?.map(|s| s.params.bucket_edges());
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT study, round, status, reason, message, roster_size, threshold, safety_code,
                    started_at_ms, finished_at_ms, count, sum, mean, stddev, histogram,
                    contributors, partial_sums
             FROM rounds WHERE study = ?1 ORDER BY round",
        )?;
        let rows = stmt.query_map([study], |r| {
            Ok((
                RoundRow {
                    study: r.get(0)?,
                    round: r.get::<_, i64>(1)? as u64,
                    status: r.get(2)?,
                    reason: r.get(3)?,
                    message: r.get(4)?,
                    roster_size: r.get(5)?,
                    threshold: r.get(6)?,
                    safety_code: r.get(7)?,
                    started_at_ms: r.get::<_, i64>(8)? as u64,
                    finished_at_ms: r.get::<_, Option<i64>>(9)?.map(|x| x as u64),
                    count: r.get::<_, Option<i64>>(10)?.map(|x| x as u64),
                    sum: r.get(11)?,
                    mean: r.get(12)?,
                    stddev: r.get(13)?,
                    histogram: None,
                    bucket_edges: None,
                    contributors: None,
                    partial_sums: r.get(16)?,
                },
                r.get::<_, Option<String>>(14)?,
                r.get::<_, Option<String>>(15)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut row, histogram, contributors) = row?;
            let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
            row.histogram = histogram
                .map(|h| serde_json::from_str(&h))
                .transpose()
                .map_err(corrupt)?;
            row.contributors = contributors
                .map(|c| serde_json::from_str(&c))
                .transpose()
                .map_err(corrupt)?;
            if row.status == "completed" {
                row.bucket_edges = edges.clone();
            }
            out.push(row);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_core::encoding::Statistics;

    fn spec(id: &str) -> StudySpec {
        format!("id={id},size=3").parse().unwrap()
    }

    fn outcome(study: &str, round: u64) -> RoundOutcome {
        let roster = cohort_core::roster::Roster {
            study: spec(study).params,
            round,
            threshold: 3,
            members: vec![],
        };
        RoundOutcome {
            study: study.into(),
            round,
            statistics: Statistics {
                count: 3,
                sum: 510.5,
                mean: 170.16666666666666,
                stddev: 8.2,
                histogram: vec![0, 0, 0, 0, 0, 2, 1, 0, 0, 0],
            },
            roster_size: 3,
            threshold: 3,
            contributors: vec![1, 2, 3],
            partial_sums: 3,
            safety_code: roster.safety_code(&[]),
            started_ms: 1000,
            finished_ms: 2000,
        }
    }

    #[test]
    fn studies_round_trip_and_ids_are_unique() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.insert_study(&spec("a"), 1).unwrap());
        assert!(s.insert_study(&spec("b"), 2).unwrap());
        assert!(!s.insert_study(&spec("a"), 3).unwrap());
        let all = s.studies().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], spec("a"));
        assert_eq!(s.study("b").unwrap(), Some(spec("b")));
        assert_eq!(s.study("c").unwrap(), None);
    }

    #[test]
    fn rounds_lifecycle() {
        let s = Store::open_in_memory().unwrap();
        s.insert_study(&spec("a"), 1).unwrap();
        assert_eq!(s.next_round("a").unwrap(), 1);
        let o = outcome("a", 1);
        let start = RoundStart {
            study: "a",
            round: 1,
            roster_size: 3,
            threshold: 3,
            safety_code: o.safety_code.as_str(),
            started_at_ms: 1000,
        };
        s.round_started(&start).unwrap();
        assert_eq!(s.next_round("a").unwrap(), 2);
        assert!(s.results("a").unwrap().is_empty());
        s.round_completed(&o).unwrap();
        let results = s.results("a").unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0], ResultRow::from_outcome(&spec("a").params, &o));
        assert_eq!(s.completed_count("a").unwrap(), 1);

        s.round_started(&RoundStart {
            round: 2,
            ..start.clone()
        })
        .unwrap();
        s.round_started(&RoundStart { round: 3, ..start }).unwrap();
        s.round_abandoned("a", 2, &AbandonReason::Shutdown, 5000)
            .unwrap();
        assert_eq!(s.abandon_in_flight(6000).unwrap(), 1);
        let rounds = s.rounds("a").unwrap();
        assert_eq!(rounds.len(), 3);
        assert_eq!(rounds[1].status, "abandoned");
        assert_eq!(rounds[1].reason.as_deref(), Some("shutdown"));
        assert_eq!(rounds[2].reason.as_deref(), Some("relay_restarted"));
        assert_eq!(rounds[2].finished_at_ms, Some(6000));
        assert_eq!(rounds[2].count, None);
        assert_eq!(s.results("a").unwrap().len(), 1);
        assert_eq!(s.next_round("a").unwrap(), 4);
    }
}
