//! How connections and the API reach one study's task: its [`StudyHandle`] and the
//! [`StudyCmd`]s it takes; how the task reaches a connection: [`PeerLink`] and [`Outbound`].

use std::sync::Arc;

use super::*;

/// What a study task sends one patient connection.
#[derive(Debug)]
pub enum Outbound {
    /// A message to send. Boxed: every connection's queue allocates slots for 32 of these up
    /// front, and an unboxed message would make that about 6 KiB per idle connection.
    Message(Box<RelayToPatient>),
    /// A message already encoded, shared by every recipient of a broadcast (cloning it shares
    /// the bytes).
    Frame(tokio_tungstenite::tungstenite::Message),
    /// The study with this id attached the connection (its join was accepted).
    Attached(Arc<str>),
    /// The study with this id detached the connection (refused join, round over, dropped).
    Detached(Arc<str>),
}

/// How a study task reaches a patient connection.
#[derive(Clone, Debug)]
pub struct PeerLink {
    /// Queue of messages for the connection.
    pub tx: mpsc::Sender<Outbound>,
    /// Notified when the connection fell too far behind and must close.
    pub kick: Arc<Notify>,
}

/// A command for a study task.
#[derive(Debug)]
pub enum StudyCmd {
    /// A decoded message from a patient connection.
    Patient {
        /// The connection.
        peer: PeerId,
        /// The message.
        msg: PatientToRelay,
        /// Where replies go.
        link: PeerLink,
    },
    /// The connection closed.
    Disconnect {
        /// The connection.
        peer: PeerId,
    },
    /// Start the round now with whoever is enrolled (the dashboard's "start").
    Start {
        /// The new status, or why the round cannot start.
        reply: oneshot::Sender<Result<StudyStatusView, ProtocolError>>,
    },
    /// Report the status.
    Status {
        /// The status.
        reply: oneshot::Sender<StudyStatusView>,
    },
    /// Abandon the running round, tell enrolled patients, and stop.
    Shutdown {
        /// Signalled once done.
        done: oneshot::Sender<()>,
    },
    /// Make the study task panic (tests of its recovery only).
    #[cfg(test)]
    Panic,
}

/// A handle on a running study.
#[derive(Clone, Debug)]
pub struct StudyHandle {
    pub(super) id: Arc<str>,
    pub(super) spec: Arc<StudySpec>,
    pub(super) tx: mpsc::Sender<StudyCmd>,
    pub(super) abort: AbortHandle,
}

impl StudyHandle {
    /// The study id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The study's specification.
    pub fn spec(&self) -> &StudySpec {
        &self.spec
    }

    /// Sends a command, waiting while the study's queue is full; `false` if the study task
    /// has stopped.
    pub async fn send(&self, cmd: StudyCmd) -> bool {
        self.tx.send(cmd).await.is_ok()
    }

    /// Completes once the study's task has stopped (shut down, or stopped because this relay
    /// lost the study's lease).
    pub async fn stopped(&self) {
        self.tx.closed().await
    }

    /// The study's status (`None` if it has stopped).
    pub async fn status(&self) -> Option<StudyStatusView> {
        let (reply, rx) = oneshot::channel();
        self.send(StudyCmd::Status { reply }).await;
        rx.await.ok()
    }

    /// Starts the round now. `Err(None)` if the study has stopped.
    pub async fn start_round(&self) -> Result<StudyStatusView, Option<ProtocolError>> {
        let (reply, rx) = oneshot::channel();
        self.send(StudyCmd::Start { reply }).await;
        match rx.await {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(None),
        }
    }
}
