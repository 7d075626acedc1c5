//! The PostgreSQL backend: tokio-postgres over a small fixed set of connections.
//!
//! Each write is one autocommitted statement: once the call returns, the row is committed
//! (and survives any relay being killed). Migrations are versioned (`migrations/pg_*.sql`),
//! recorded in `schema_migrations` and run at connect time in one transaction under an
//! advisory transaction lock, so relays starting together apply each migration once.
//! No TLS: the database is expected on loopback or a trusted network.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cohort_core::message::AbandonReason;
use cohort_core::protocol::hospital::RoundOutcome;
use cohort_core::study::StudySpec;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Row};
use tracing::warn;

use super::{CompletedRow, RoundStartOwned, StoreError, completed_values, corrupt};
use crate::views::RoundRow;

/// Versioned migrations, applied in order; a version is never edited once released.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/pg_0001_init.sql")),
    (2, include_str!("migrations/pg_0002_round_results.sql")),
];

/// Number of connections used for queries (a client pipelines concurrent queries).
const CONNECTIONS: usize = 4;

/// Advisory lock key taken while migrating ("cohort" in ASCII).
const MIGRATION_LOCK: i64 = 0x636f_686f_7274;

/// The NOTIFY channel for "results or status of a study changed"; the payload is the id.
const CHANNEL: &str = "cohort_study_changed";

#[derive(Clone)]
pub(super) struct PgStore {
    config: Arc<Config>,
    clients: Arc<[Client]>,
    next: Arc<AtomicUsize>,
}

async fn connect_one(config: &Config) -> Result<Client, StoreError> {
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

fn u(x: i64) -> u64 {
    x as u64
}

impl PgStore {
    pub(super) async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let config = Config::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?;
        let mut first = connect_one(&config).await?;
        migrate(&mut first).await?;
        let mut clients = vec![first];
        for _ in 1..CONNECTIONS {
            clients.push(connect_one(&config).await?);
        }
        Ok(PgStore {
            config: Arc::new(config),
            clients: clients.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn client(&self) -> &Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[i]
    }

    pub(super) async fn insert_study(
        &self,
        spec: &StudySpec,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(spec).map_err(corrupt)?;
        let n = self
            .client()
            .execute(
                "INSERT INTO studies (id, spec, created_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&spec.params.id, &json, &(now_ms as i64)],
            )
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn studies(&self) -> Result<Vec<StudySpec>, StoreError> {
        let rows = self
            .client()
            .query("SELECT spec FROM studies ORDER BY seq", &[])
            .await?;
        rows.iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
            .collect()
    }

    pub(super) async fn study(&self, id: &str) -> Result<Option<StudySpec>, StoreError> {
        let row = self
            .client()
            .query_opt("SELECT spec FROM studies WHERE id = $1", &[&id])
            .await?;
        row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
            .transpose()
    }

    pub(super) async fn next_round(&self, study: &str) -> Result<u64, StoreError> {
        let row = self
            .client()
            .query_one("SELECT MAX(round) FROM rounds WHERE study = $1", &[&study])
            .await?;
        Ok(row.get::<_, Option<i64>>(0).map_or(1, |m| u(m) + 1))
    }

    pub(super) async fn completed_count(&self, study: &str) -> Result<u64, StoreError> {
        let row = self
            .client()
            .query_one(
                "SELECT COUNT(*) FROM rounds WHERE study = $1 AND status = 'completed'",
                &[&study],
            )
            .await?;
        Ok(u(row.get(0)))
    }

    pub(super) async fn round_started(&self, s: &RoundStartOwned) -> Result<(), StoreError> {
        self.client()
            .execute(
                "INSERT INTO rounds
                   (study, round, status, roster_size, threshold, safety_code, started_at_ms)
                 VALUES ($1, $2, 'running', $3, $4, $5, $6)
                 ON CONFLICT (study, round) DO UPDATE SET
                   status = 'running', reason = NULL, message = NULL,
                   roster_size = EXCLUDED.roster_size, threshold = EXCLUDED.threshold,
                   safety_code = EXCLUDED.safety_code, started_at_ms = EXCLUDED.started_at_ms,
                   finished_at_ms = NULL, count = NULL, sum = NULL, mean = NULL, stddev = NULL,
                   histogram = NULL, contributors = NULL, partial_sums = NULL, result = NULL,
                   excluded = NULL",
                &[
                    &s.study,
                    &(s.round as i64),
                    &i64::from(s.roster_size),
                    &i64::from(s.threshold),
                    &s.safety_code,
                    &(s.started_at_ms as i64),
                ],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn round_completed(&self, o: &RoundOutcome) -> Result<(), StoreError> {
        let r = CompletedRow::of(o)?;
        self.client()
            .execute(
                "INSERT INTO rounds
                   (study, round, status, reason, message, roster_size, threshold, safety_code,
                    started_at_ms, finished_at_ms, count, sum, mean, stddev, histogram,
                    contributors, partial_sums, result, excluded)
                 VALUES ($1, $2, 'completed', NULL, NULL, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                         $12, $13, $14, $15, $16)
                 ON CONFLICT (study, round) DO UPDATE SET
                   status = 'completed', reason = NULL, message = NULL,
                   roster_size = EXCLUDED.roster_size, threshold = EXCLUDED.threshold,
                   safety_code = EXCLUDED.safety_code, started_at_ms = EXCLUDED.started_at_ms,
                   finished_at_ms = EXCLUDED.finished_at_ms, count = EXCLUDED.count,
                   sum = EXCLUDED.sum, mean = EXCLUDED.mean, stddev = EXCLUDED.stddev,
                   histogram = EXCLUDED.histogram, contributors = EXCLUDED.contributors,
                   partial_sums = EXCLUDED.partial_sums, result = EXCLUDED.result,
                   excluded = EXCLUDED.excluded",
                &completed_values!(r, &(dyn ToSql + Sync)),
            )
            .await?;
        Ok(())
    }

    pub(super) async fn round_abandoned(
        &self,
        study: &str,
        round: u64,
        reason: &AbandonReason,
        finished_at_ms: u64,
    ) -> Result<(), StoreError> {
        self.client()
            .execute(
                "UPDATE rounds SET status = 'abandoned', reason = $3, message = $4,
                   finished_at_ms = $5
                 WHERE study = $1 AND round = $2",
                &[
                    &study,
                    &(round as i64),
                    &reason.kind(),
                    &reason.to_string(),
                    &(finished_at_ms as i64),
                ],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn abandon_in_flight(
        &self,
        study: Option<&str>,
        now_ms: u64,
    ) -> Result<usize, StoreError> {
        let reason = AbandonReason::RelayRestarted;
        let n = self
            .client()
            .execute(
                "UPDATE rounds SET status = 'abandoned', reason = $1, message = $2,
                   finished_at_ms = $3
                 WHERE status = 'running' AND ($4::TEXT IS NULL OR study = $4)",
                &[
                    &reason.kind(),
                    &reason.to_string(),
                    &(now_ms as i64),
                    &study,
                ],
            )
            .await?;
        Ok(n as usize)
    }

    pub(super) async fn rounds(&self, study: &str) -> Result<Vec<RoundRow>, StoreError> {
        let edges = self
            .study(study)
            .await?
            .map(|s| crate::views::bucket_edges(&s.params));
        let rows = self
            .client()
            .query(
                "SELECT study, round, status, reason, message, roster_size, threshold,
                        safety_code, started_at_ms, finished_at_ms, count, sum, mean, stddev,
                        histogram, contributors, partial_sums, result, excluded
                 FROM rounds WHERE study = $1 ORDER BY round",
                &[&study],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let mut row = round_row(r)?;
                row.set_stored_result(r.get::<_, Option<&str>>(17))
                    .map_err(corrupt)?;
                row.set_stored_excluded(r.get::<_, Option<&str>>(18))
                    .map_err(corrupt)?;
                if row.status == "completed" {
                    row.bucket_edges = edges.clone();
                }
                Ok(row)
            })
            .collect()
    }

    pub(super) async fn try_acquire(
        &self,
        study: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let row = self
            .client()
            .query_opt(
                "INSERT INTO study_owner (study, owner, expires_at)
                 VALUES ($1, $2, clock_timestamp() + $3::FLOAT8 * INTERVAL '1 millisecond')
                 ON CONFLICT (study) DO UPDATE
                   SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                   WHERE study_owner.owner = EXCLUDED.owner
                      OR study_owner.expires_at <= clock_timestamp()
                 RETURNING owner",
                &[&study, &owner, &(ttl.as_millis() as f64)],
            )
            .await?;
        Ok(row.is_some())
    }

    pub(super) async fn renew(
        &self,
        study: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let n = self
            .client()
            .execute(
                "UPDATE study_owner
                   SET expires_at = clock_timestamp() + $3::FLOAT8 * INTERVAL '1 millisecond'
                 WHERE study = $1 AND owner = $2 AND expires_at > clock_timestamp()",
                &[&study, &owner, &(ttl.as_millis() as f64)],
            )
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn release(&self, study: &str, owner: &str) -> Result<bool, StoreError> {
        let n = self
            .client()
            .execute(
                "DELETE FROM study_owner WHERE study = $1 AND owner = $2",
                &[&study, &owner],
            )
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn owner_of(&self, study: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT owner FROM study_owner WHERE study = $1 AND expires_at > clock_timestamp()",
                &[&study],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(super) async fn notify_changed(&self, study: &str) -> Result<(), StoreError> {
        self.client()
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &study])
            .await?;
        Ok(())
    }

    pub(super) async fn listen(&self) -> Result<StudyChanges, StoreError> {
        let (client, mut conn) = self.config.connect(NoTls).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx)).boxed();
        tokio::spawn(async move {
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "postgres listen connection closed");
                        return;
                    }
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok(StudyChanges {
            rx,
            _client: client,
        })
    }
}

/// Study ids whose results or status changed, from a LISTEN on its own connection (closed
/// when this is dropped).
pub struct StudyChanges {
    rx: mpsc::UnboundedReceiver<String>,
    _client: Client,
}

impl std::fmt::Debug for StudyChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StudyChanges")
    }
}

impl StudyChanges {
    /// The next changed study id; `None` once the connection is lost.
    pub async fn next(&mut self) -> Option<String> {
        self.rx.recv().await
    }
}

fn round_row(r: &Row) -> Result<RoundRow, StoreError> {
    let small = |x: i64| u32::try_from(x).map_err(corrupt);
    Ok(RoundRow {
        study: r.get(0),
        round: u(r.get(1)),
        status: r.get(2),
        reason: r.get(3),
        message: r.get(4),
        roster_size: small(r.get(5))?,
        threshold: small(r.get(6))?,
        safety_code: r.get(7),
        started_at_ms: u(r.get(8)),
        finished_at_ms: r.get::<_, Option<i64>>(9).map(u),
        excluded: Vec::new(),
        count: r.get::<_, Option<i64>>(10).map(u),
        sum: r.get(11),
        mean: r.get(12),
        stddev: r.get(13),
        histogram: r
            .get::<_, Option<&str>>(14)
            .map(serde_json::from_str)
            .transpose()
            .map_err(corrupt)?,
        questions: None,
        pairs: None,
        by_option: None,
        bucket_edges: None,
        contributors: r
            .get::<_, Option<&str>>(15)
            .map(serde_json::from_str)
            .transpose()
            .map_err(corrupt)?,
        partial_sums: r.get::<_, Option<i64>>(16).map(small).transpose()?,
    })
}

async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if !done.contains(version) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
