//! The sans-IO protocol state machines.
//!
//! [`Patient`] runs one patient's side of one round; [`Hospital`] runs one study on the relay,
//! round after round. Neither does IO, reads a clock or draws ambient randomness: the driver
//! feeds messages and the current time in milliseconds (`handle`), drains what to send
//! (`poll_output`), and wakes the machine at `poll_timeout()` via `handle_timeout(now_ms)`.

pub mod aggregate;
pub mod hospital;
pub mod membership;
pub mod patient;
mod proving;
pub mod seen;

pub use hospital::{
    Hospital, HospitalEvent, HospitalOutput, PeerId, RoundOutcome, RoundPhase, RoundStatus,
    StudyStatus,
};
pub use membership::{Membership, Route};
pub use patient::{Patient, PatientEvent};
pub use seen::SeenRounds;
