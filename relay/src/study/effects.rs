//! What a Hospital step asks of the relay ([`Effect`]) and the store writes among it.

use cohort_core::message::AbandonReason;
use cohort_core::protocol::HospitalOutput;
use tracing::error;

use super::StudyTask;
use crate::store::RoundStart;
use crate::views::{DashboardMsg, StudyStatusView};

/// The reply channel of a `start` command and what to answer.
pub(crate) type StartReply = (
    tokio::sync::oneshot::Sender<Result<StudyStatusView, cohort_core::error::ProtocolError>>,
    Result<(), cohort_core::error::ProtocolError>,
);

/// One thing a Hospital step asked of the relay.
#[allow(clippy::large_enum_variant)] // a short-lived queue, drained after every step
pub(crate) enum Effect {
    /// Persist a round event (awaited before anything after it).
    Store(Write),
    /// Publish on the dashboard feed.
    Publish(DashboardMsg),
    /// A message, attach or detach for a connection.
    Out(HospitalOutput),
}

/// A round event to persist.
pub(crate) enum Write {
    Started {
        study: String,
        round: u64,
        roster_size: u32,
        threshold: u32,
        safety_code: String,
        started_ms: u64,
    },
    Completed(Box<cohort_core::protocol::RoundOutcome>),
    Abandoned {
        study: String,
        round: u64,
        reason: AbandonReason,
        finished_ms: u64,
    },
}

impl StudyTask {
    /// Writes one round event to the store; a failure is logged (the round goes on).
    pub(super) async fn persist(&mut self, w: Write) {
        match w {
            Write::Started {
                study,
                round,
                roster_size,
                threshold,
                safety_code,
                started_ms,
            } => {
                let start = RoundStart {
                    study: &study,
                    round,
                    roster_size,
                    threshold,
                    safety_code: &safety_code,
                    started_at_ms: started_ms,
                };
                if let Err(e) = self.store.round_started(&start).await {
                    error!(study = %study, round, error = %e, "cannot store round start");
                }
            }
            Write::Completed(o) => {
                if let Err(e) = self.store.round_completed(&o).await {
                    error!(study = %o.study, round = o.round, error = %e, "cannot store result");
                }
            }
            Write::Abandoned {
                study,
                round,
                reason,
                finished_ms,
            } => {
                if let Err(e) = self
                    .store
                    .round_abandoned(&study, round, &reason, finished_ms)
                    .await
                {
                    error!(study = %study, round, error = %e, "cannot store abandonment");
                }
            }
        }
    }
}
