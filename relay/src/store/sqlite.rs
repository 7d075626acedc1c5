//! The SQLite backend: one connection owned by a dedicated OS thread.
//!
//! Async callers send a job over a channel and await a oneshot reply; the thread runs jobs
//! one at a time, so SQLite never runs inside an async task and no lock is held across an
//! `.await`. Each write is one autocommitted statement in WAL mode: once the reply is sent,
//! the row survives the process being killed (even by SIGKILL).

use std::path::Path;
use std::sync::mpsc as std_mpsc;

use cohort_core::message::AbandonReason;
use cohort_core::protocol::hospital::RoundOutcome;
use cohort_core::study::StudySpec;
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use tokio::sync::oneshot;

use super::{CompletedRow, RoundStartOwned, StoreError, completed_values};
use crate::views::{ResultRow, RoundRow};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "cohort.sqlite3";

/// Versioned migrations, applied in order to a file whose `PRAGMA user_version` is below
/// their version; each sets `user_version` to its own. A version is never edited once released.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite_0001_init.sql")),
    (2, include_str!("migrations/sqlite_0002_round_results.sql")),
];

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the SQLite thread. Cloning shares the thread; it stops when every handle is
/// dropped.
#[derive(Clone)]
pub(super) struct SqliteStore {
    jobs: std_mpsc::Sender<Job>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `dir` on a new thread.
    pub(super) fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(DB_FILE);
        SqliteStore::start(move || Connection::open(path))
    }

    /// An in-memory database on a new thread.
    pub(super) fn open_in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::start(Connection::open_in_memory)
    }

    fn start(
        open: impl FnOnce() -> rusqlite::Result<Connection> + Send + 'static,
    ) -> Result<SqliteStore, StoreError> {
        let (jobs, rx) = std_mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("cohort-sqlite".into())
            .spawn(move || {
                let mut conn = match open().map_err(StoreError::from).and_then(init) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Runs until every sender is dropped.
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })?;
        ready_rx.recv().map_err(|_| StoreError::Closed)??;
        Ok(SqliteStore { jobs })
    }

    /// Runs `f` on the SQLite thread and awaits its result.
    pub(super) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn: &mut Connection| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn init(conn: Connection) -> Result<Connection, StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: a committed transaction is in the log file before the call returns, so it
    // survives the process being killed; NORMAL skips the fsync per commit (power loss
    // may lose the last commits, a process kill does not).
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    migrate(&conn)?;
    Ok(conn)
}

/// Applies the migrations the file lacks, each in one transaction.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (v, sql) in MIGRATIONS {
        if *v > version {
            conn.execute_batch(&format!("BEGIN IMMEDIATE;\n{sql}\nCOMMIT;"))?;
        }
    }
    Ok(())
}

/// Stores a new study. Returns `false` (and changes nothing) if the id exists.
pub(super) fn insert_study(
    conn: &Connection,
    spec: &StudySpec,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let json = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let n = conn.execute(
        "INSERT OR IGNORE INTO studies (id, spec, created_at_ms) VALUES (?1, ?2, ?3)",
        params![spec.params.id, json, now_ms as i64],
    )?;
    Ok(n == 1)
}

/// Every stored study, oldest first.
pub(super) fn studies(conn: &Connection) -> Result<Vec<StudySpec>, StoreError> {
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
pub(super) fn study(conn: &Connection, id: &str) -> Result<Option<StudySpec>, StoreError> {
    let json: Option<String> = conn
        .query_row("SELECT spec FROM studies WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

/// The first round id a new run of the study must use: one past every round ever started.
pub(super) fn next_round(conn: &Connection, study: &str) -> Result<u64, StoreError> {
    let max: Option<i64> = conn.query_row(
        "SELECT MAX(round) FROM rounds WHERE study = ?1",
        [study],
        |r| r.get(0),
    )?;
    Ok(max.map_or(1, |m| m as u64 + 1))
}

/// Number of completed rounds of the study.
pub(super) fn completed_count(conn: &Connection, study: &str) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM rounds WHERE study = ?1 AND status = 'completed'",
        [study],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// Records a round that has started.
pub(super) fn round_started(conn: &Connection, s: &RoundStartOwned) -> Result<(), StoreError> {
    conn.execute(
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
pub(super) fn round_completed(conn: &Connection, o: &RoundOutcome) -> Result<(), StoreError> {
    let r = CompletedRow::of(o)?;
    conn.execute(
        "INSERT OR REPLACE INTO rounds
           (study, round, status, reason, message, roster_size, threshold, safety_code,
            started_at_ms, finished_at_ms, count, sum, mean, stddev, histogram,
            contributors, partial_sums, result, excluded)
         VALUES (?1, ?2, 'completed', NULL, NULL, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                 ?12, ?13, ?14, ?15, ?16)",
        &completed_values!(r, &dyn ToSql)[..],
    )?;
    Ok(())
}

/// Records that a round was abandoned.
pub(super) fn round_abandoned(
    conn: &Connection,
    study: &str,
    round: u64,
    reason: &AbandonReason,
    finished_at_ms: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE rounds SET status = 'abandoned', reason = ?3, message = ?4, finished_at_ms = ?5
         WHERE study = ?1 AND round = ?2",
        params![
            study,
            round as i64,
            reason.kind(),
            reason.to_string(),
            finished_at_ms as i64
        ],
    )?;
    Ok(())
}

/// Marks every round still `running` as abandoned with reason `relay_restarted`: they
/// were in flight when the relay stopped without finishing them. Returns how many.
pub(super) fn abandon_in_flight(conn: &Connection, now_ms: u64) -> Result<usize, StoreError> {
    let reason = AbandonReason::RelayRestarted;
    let n = conn.execute(
        "UPDATE rounds SET status = 'abandoned', reason = ?1, message = ?2, finished_at_ms = ?3
         WHERE status = 'running'",
        params![reason.kind(), reason.to_string(), now_ms as i64],
    )?;
    Ok(n)
}

pub(super) fn abandon_in_flight_of(
    conn: &Connection,
    study: &str,
    now_ms: u64,
) -> Result<usize, StoreError> {
    let reason = AbandonReason::RelayRestarted;
    let n = conn.execute(
        "UPDATE rounds SET status = 'abandoned', reason = ?1, message = ?2, finished_at_ms = ?3
         WHERE status = 'running' AND study = ?4",
        params![reason.kind(), reason.to_string(), now_ms as i64, study],
    )?;
    Ok(n)
}

pub(super) fn results(conn: &Connection, study: &str) -> Result<Vec<ResultRow>, StoreError> {
    Ok(super::completed_results(rounds(conn, study)?))
}

/// Completed and abandoned rounds of a study (and a running one, if any), oldest first.
pub(super) fn rounds(conn: &Connection, study: &str) -> Result<Vec<RoundRow>, StoreError> {
    let edges = self::study(conn, study)?.map(|s| crate::views::bucket_edges(&s.params));
    let mut stmt = conn.prepare(
        "SELECT study, round, status, reason, message, roster_size, threshold, safety_code,
                started_at_ms, finished_at_ms, count, sum, mean, stddev, histogram,
                contributors, partial_sums, result, excluded
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
                excluded: Vec::new(),
                count: r.get::<_, Option<i64>>(10)?.map(|x| x as u64),
                sum: r.get(11)?,
                mean: r.get(12)?,
                stddev: r.get(13)?,
                histogram: None,
                questions: None,
                pairs: None,
                by_option: None,
                bucket_edges: None,
                contributors: None,
                partial_sums: r.get(16)?,
            },
            r.get::<_, Option<String>>(14)?,
            r.get::<_, Option<String>>(15)?,
            r.get::<_, Option<String>>(17)?,
            r.get::<_, Option<String>>(18)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut row, histogram, contributors, result, excluded) = row?;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        row.histogram = histogram
            .map(|h| serde_json::from_str(&h))
            .transpose()
            .map_err(corrupt)?;
        row.contributors = contributors
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(corrupt)?;
        row.set_stored_result(result.as_deref()).map_err(corrupt)?;
        row.set_stored_excluded(excluded.as_deref())
            .map_err(corrupt)?;
        if row.status == "completed" {
            row.bucket_edges = edges.clone();
        }
        out.push(row);
    }
    Ok(out)
}
