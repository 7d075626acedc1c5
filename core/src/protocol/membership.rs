//! Which study a relay connection belongs to: the per-connection routing rules, so that a
//! driver holds no protocol rule of its own.
//!
//! A connection is attached to at most one study. A `join` names the study and makes the
//! connection *joining* there; the study's [`HospitalOutput::Attached`] confirms it and its
//! [`HospitalOutput::Detached`] ends it (refused join, round over, left, dropped). Every
//! other message goes to the study the connection joined; with none, it is refused here.
//!
//! A connection opened for one study ([`Membership::bound`], the relay's `/ws?study=ID`, so
//! that a load balancer can route it by study) may join only that study: a `join` for another
//! is refused with [`ProtocolError::StudyNotOfConnection`] (code `forbidden`).
//!
//! [`HospitalOutput::Attached`]: super::HospitalOutput::Attached
//! [`HospitalOutput::Detached`]: super::HospitalOutput::Detached

use alloc::string::String;

use crate::error::ProtocolError;
use crate::message::{ErrorMsg, PatientToRelay, RelayToPatient};

/// Where a decoded patient message goes, by [`Membership::route`].
#[derive(Debug)]
pub enum Route<H> {
    /// To this study's state machine.
    Study(H),
    /// Nowhere: send this `error` reply back on the connection.
    Refuse(ErrorMsg),
}

#[derive(Debug)]
struct Joined<H> {
    study: String,
    handle: H,
    confirmed: bool,
}

/// One connection's membership. `H` is the driver's handle on a study (e.g. a channel).
#[derive(Debug)]
pub struct Membership<H> {
    joined: Option<Joined<H>>,
    bound: Option<String>,
}

impl<H> Default for Membership<H> {
    fn default() -> Membership<H> {
        Membership {
            joined: None,
            bound: None,
        }
    }
}

fn refuse<H>(e: &ProtocolError) -> Route<H> {
    Route::Refuse(ErrorMsg::refusing(e))
}

impl<H: Clone> Membership<H> {
    /// A connection that has joined nothing.
    pub fn new() -> Membership<H> {
        Membership::default()
    }

    /// A connection opened for study `study` only: a `join` for any other is refused.
    pub fn bound(study: &str) -> Membership<H> {
        Membership {
            joined: None,
            bound: Some(study.into()),
        }
    }

    /// The study this connection was opened for, if any.
    pub fn bound_study(&self) -> Option<&str> {
        self.bound.as_deref()
    }

    /// Decides where `msg` goes. `find` looks a study up by id (for a `join`). A `join` on a
    /// connection already joined somewhere, a `join` for an unknown study and a round message
    /// before any join are refused, and so is a `join` for a study other than the one a
    /// [bound](Membership::bound) connection was opened for. A `leave` ends the membership at
    /// once.
    pub fn route(
        &mut self,
        msg: &PatientToRelay,
        find: impl FnOnce(&str) -> Option<H>,
    ) -> Route<H> {
        match msg {
            PatientToRelay::Join(j) => {
                if self.joined.is_some() {
                    return refuse(&ProtocolError::AlreadyJoined);
                }
                if self.bound.as_ref().is_some_and(|b| *b != j.study) {
                    return refuse(&ProtocolError::StudyNotOfConnection);
                }
                let Some(handle) = find(&j.study) else {
                    return refuse(&ProtocolError::UnknownStudy);
                };
                self.joined = Some(Joined {
                    study: j.study.clone(),
                    handle: handle.clone(),
                    confirmed: false,
                });
                Route::Study(handle)
            }
            other => {
                let Some(j) = &self.joined else {
                    return refuse(&ProtocolError::WrongState {
                        state: "not joined",
                        got: other.kind(),
                    });
                };
                let handle = j.handle.clone();
                if matches!(other, PatientToRelay::Leave(_)) {
                    self.joined = None;
                }
                Route::Study(handle)
            }
        }
    }

    /// The study a message was routed to is not running: the membership it began ends, and
    /// this is the reply to send.
    pub fn unavailable(&mut self) -> RelayToPatient {
        self.joined = None;
        RelayToPatient::Error(ErrorMsg::refusing(&ProtocolError::StudyUnavailable))
    }

    /// Study `study` attached this connection. `true` if that confirms its pending join.
    pub fn attached(&mut self, study: &str) -> bool {
        match &mut self.joined {
            Some(j) if j.study == study && !j.confirmed => {
                j.confirmed = true;
                true
            }
            _ => false,
        }
    }

    /// Study `study` detached this connection. `true` if that ended a confirmed membership
    /// (a round ran to its end or the patient was dropped), `false` for a refused join or a
    /// study this connection is not in.
    pub fn detached(&mut self, study: &str) -> bool {
        match &self.joined {
            Some(j) if j.study == study => {
                let confirmed = j.confirmed;
                self.joined = None;
                confirmed
            }
            _ => false,
        }
    }

    /// Ends the membership (the connection closed); the study to tell, if any.
    pub fn take(&mut self) -> Option<H> {
        self.joined.take().map(|j| j.handle)
    }

    /// The id of the study this connection joined or is joining.
    pub fn study(&self) -> Option<&str> {
        self.joined.as_ref().map(|j| j.study.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::KeyPair;
    use crate::error::ErrorCode;
    use crate::message::{Join, Leave, PROTOCOL_VERSION, PartialSum};
    use alloc::vec::Vec;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn join(study: &str) -> PatientToRelay {
        PatientToRelay::Join(Join {
            v: PROTOCOL_VERSION,
            study: study.into(),
            commitment: crate::commitment::commit(
                study,
                &KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(1)).public(),
                &crate::commitment::Nonce([7; 32]),
            ),
            invite: None,
        })
    }

    fn partial() -> PatientToRelay {
        PatientToRelay::PartialSum(PartialSum {
            round: 1,
            sum: Vec::new(),
        })
    }

    fn code<H>(r: Route<H>) -> Option<ErrorCode> {
        match r {
            Route::Refuse(e) => Some(e.code),
            _ => None,
        }
    }

    fn known(id: &str) -> Option<u8> {
        (id == "s").then_some(7)
    }

    #[test]
    fn round_messages_before_a_join_are_refused() {
        let mut m = Membership::<u8>::new();
        assert_eq!(
            code(m.route(&partial(), known)),
            Some(ErrorCode::Unexpected)
        );
        assert_eq!(m.study(), None);
    }

    #[test]
    fn a_join_routes_and_a_second_join_is_refused() {
        let mut m = Membership::new();
        assert!(matches!(m.route(&join("s"), known), Route::Study(7)));
        assert!(matches!(m.route(&partial(), known), Route::Study(7)));
        assert_eq!(code(m.route(&join("s"), known)), Some(ErrorCode::Duplicate));
        assert_eq!(code(m.route(&join("x"), known)), Some(ErrorCode::Duplicate));
    }

    #[test]
    fn unknown_studies_are_refused_and_leave_no_membership() {
        let mut m = Membership::new();
        assert_eq!(
            code(m.route(&join("x"), known)),
            Some(ErrorCode::UnknownStudy)
        );
        assert_eq!(m.study(), None);
        assert!(matches!(m.route(&join("s"), known), Route::Study(7)));
    }

    #[test]
    fn attach_and_detach_follow_the_study() {
        let mut m = Membership::new();
        m.route(&join("s"), known);
        assert!(!m.attached("other"));
        assert!(m.attached("s"));
        assert!(!m.attached("s"), "confirmed once");
        assert!(!m.detached("other"));
        assert_eq!(m.study(), Some("s"));
        assert!(m.detached("s"));
        assert_eq!(m.study(), None);
        // A refused join: detached before any attach, not progress.
        m.route(&join("s"), known);
        assert!(!m.detached("s"));
        assert_eq!(m.study(), None);
    }

    #[test]
    fn a_bound_connection_joins_only_its_study() {
        let mut m = Membership::bound("s");
        assert_eq!(m.bound_study(), Some("s"));
        assert_eq!(code(m.route(&join("x"), known)), Some(ErrorCode::Forbidden));
        assert_eq!(m.study(), None, "a refused join leaves no membership");
        assert!(matches!(m.route(&join("s"), known), Route::Study(7)));
        m.attached("s");
        assert!(m.detached("s"));
        assert_eq!(code(m.route(&join("x"), known)), Some(ErrorCode::Forbidden));
        assert_eq!(m.bound_study(), Some("s"), "the binding outlives a round");
    }

    #[test]
    fn leave_ends_the_membership_at_once() {
        let mut m = Membership::new();
        m.route(&join("s"), known);
        m.attached("s");
        let leave = PatientToRelay::Leave(Leave {
            v: PROTOCOL_VERSION,
        });
        assert!(matches!(m.route(&leave, known), Route::Study(7)));
        assert_eq!(m.study(), None);
        assert!(matches!(m.route(&join("s"), known), Route::Study(7)));
    }

    #[test]
    fn unavailable_ends_the_join_and_replies() {
        let mut m = Membership::new();
        m.route(&join("s"), known);
        match m.unavailable() {
            RelayToPatient::Error(e) => assert_eq!(e.code, ErrorCode::Unavailable),
            other => panic!("unexpected {}", other.kind()),
        }
        assert_eq!(m.take(), None);
    }
}
