//! The hospital's side of validity proofs: it routes each patient's sealed verifier shares to
//! the checker of each proof (`verify` → `checks`, one per proof), each checker's sealed verdicts to everyone
//! (`verdict` → `verdicts`, tagged with the dealer), and settles the contributor set of the partial sums: the
//! contributors whose checker found their proof valid. It reads the verdicts in clear to know
//! that set; the patients trust only the sealed copies (see [`crate::proof`]).

use alloc::vec::Vec;

use super::{Hospital, RoundState};
use crate::envelope::TAG_LEN;
use crate::error::ProtocolError;
use crate::frame::ShareList;
use crate::message::{
    AbandonReason, Checks, RelayToPatient, Verdict as VerdictMsg, Verdicts, Verify,
};
use crate::proof::{self, Exclusion, VERDICT_PLAIN_LEN, VERIFY_PLAIN_LEN, Verdict};
use crate::protocol::HospitalOutput;
use crate::sharing::Scheme;

impl Hospital {
    fn keyed_list(&self) -> Vec<u32> {
        self.round.as_ref().map_or_else(Vec::new, |r| {
            (1..=r.roster.n())
                .filter(|&j| r.keyed[j as usize - 1])
                .collect()
        })
    }

    pub(super) fn on_verify(
        &mut self,
        now_ms: u64,
        from: crate::protocol::PeerId,
        v: Verify,
    ) -> Result<(), ProtocolError> {
        let me = self.member_index(from, v.round)?;
        let keyed = self.keyed_list();
        let r = self.round.as_mut().expect("member_index checked");
        let RoundState::AwaitingVerify {
            contributors,
            received,
            count,
        } = &mut r.state
        else {
            return Err(ProtocolError::WrongState {
                state: r.state.phase().as_str(),
                got: "verify",
            });
        };
        if received[me as usize - 1].is_some() {
            return Err(ProtocolError::DuplicateShares);
        }
        // One entry per dealer whose proof share this member holds, tagged with the dealer,
        // ascending.
        let mut last = 0;
        let ok = v.checks.sealed_len() == VERIFY_PLAIN_LEN + TAG_LEN
            && v.checks.iter().all(|(dealer, _)| {
                let fine = dealer > last
                    && dealer != me
                    && contributors.binary_search(&dealer).is_ok()
                    && keyed.binary_search(&dealer).is_ok();
                last = dealer;
                fine
            });
        if !ok {
            return Err(ProtocolError::BadShares);
        }
        received[me as usize - 1] = Some(v.checks);
        *count += 1;
        if self.all_live_reported() {
            self.send_checks(now_ms);
        }
        Ok(())
    }

    /// Sends every checker the verifier shares of its checkee's proof.
    pub(super) fn send_checks(&mut self, now_ms: u64) {
        let keyed = self.keyed_list();
        let Some(mut r) = self.round.take() else {
            return;
        };
        let RoundState::AwaitingVerify {
            contributors,
            received,
            ..
        } = &mut r.state
        else {
            self.round = Some(r);
            return;
        };
        let n = r.roster.n() as usize;
        let mut checkers: Vec<Option<u32>> = alloc::vec![None; n];
        for &c in contributors.iter() {
            let Some((k, _)) = proof::checker_of(&keyed, contributors, c) else {
                continue;
            };
            if !r.live[k as usize - 1] {
                continue;
            }
            let mut checks = ShareList::with_capacity(VERIFY_PLAIN_LEN + TAG_LEN, keyed.len());
            for (j, list) in received.iter().enumerate() {
                let Some(list) = list else { continue };
                // Each list is ascending by dealer: find the entry for c.
                let (mut lo, mut hi) = (0, list.len());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if list.get(mid).0 < c {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                if lo < list.len() && list.get(lo).0 == c {
                    checks.push(j as u32 + 1, list.get(lo).1);
                }
            }
            checkers[c as usize - 1] = Some(k);
            self.out.push_back(HospitalOutput::Send {
                to: r.peers[k as usize - 1],
                msg: RelayToPatient::Checks(Checks {
                    round: r.roster.round,
                    dealer: c,
                    checks,
                }),
            });
        }
        r.state = RoundState::AwaitingVerdicts {
            contributors: core::mem::take(contributors),
            checkers,
            received: (0..n).map(|_| None).collect(),
            count: 0,
        };
        r.deadline = now_ms.saturating_add(self.spec.deadlines.partials_ms);
        self.round = Some(r);
        if self.all_live_reported() {
            self.settle_verdicts(now_ms);
        }
    }

    pub(super) fn on_verdict(
        &mut self,
        now_ms: u64,
        from: crate::protocol::PeerId,
        v: VerdictMsg,
    ) -> Result<(), ProtocolError> {
        let me = self.member_index(from, v.round)?;
        let keyed = self.keyed_list();
        let r = self.round.as_mut().expect("member_index checked");
        let RoundState::AwaitingVerdicts {
            checkers,
            received,
            count,
            ..
        } = &mut r.state
        else {
            return Err(ProtocolError::WrongState {
                state: r.state.phase().as_str(),
                got: "verdict",
            });
        };
        let dealer = v.dealer as usize;
        if dealer == 0 || dealer > checkers.len() || checkers[dealer - 1] != Some(me) {
            return Err(ProtocolError::BadShares);
        }
        if received[dealer - 1].is_some() {
            return Err(ProtocolError::DuplicateShares);
        }
        let others = keyed.iter().copied().filter(|&j| j != me);
        let ok = v.sealed.sealed_len() == VERDICT_PLAIN_LEN + TAG_LEN
            && v.sealed.len() == keyed.len() - 1
            && v.sealed
                .iter()
                .zip(others)
                .all(|((to, _), want)| to == want);
        if !ok {
            return Err(ProtocolError::BadShares);
        }
        received[dealer - 1] = Some((v.verdict, v.sealed));
        *count += 1;
        if self.all_live_reported() {
            self.settle_verdicts(now_ms);
        }
        Ok(())
    }

    /// Every expected verdict is in (or the deadline passed): the contributor set of the
    /// partial sums is the contributors whose proof was found valid. Forwards every verdict to
    /// every live member, or abandons the round if it cannot complete.
    pub(super) fn settle_verdicts(&mut self, now_ms: u64) {
        let keyed = self.keyed_list();
        let Some(mut r) = self.round.take() else {
            return;
        };
        let live = r.live_count();
        let RoundState::AwaitingVerdicts {
            contributors,
            checkers,
            received,
            ..
        } = &mut r.state
        else {
            self.round = Some(r);
            return;
        };
        let mut accepted = Vec::with_capacity(contributors.len());
        let mut excluded = Vec::new();
        for &c in contributors.iter() {
            let verdict = received[c as usize - 1]
                .as_ref()
                .map_or(Verdict::NotVerified, |(v, _)| *v);
            if verdict == Verdict::Valid {
                accepted.push(c);
            } else {
                excluded.push(Exclusion {
                    index: c,
                    reason: verdict,
                });
            }
        }
        let t = r.roster.threshold;
        let additive = matches!(r.scheme, Scheme::Additive { .. });
        let needed = t.max(r.roster.study.min_cohort).min(r.roster.n());
        if live < t {
            self.round = Some(r);
            self.abandon(
                now_ms,
                AbandonReason::TooFewPartialSums {
                    got: live,
                    needed: t,
                },
            );
            return;
        }
        if (additive && !excluded.is_empty()) || (accepted.len() as u32) < needed {
            self.round = Some(r);
            let reason = if excluded.is_empty() {
                AbandonReason::TooFewContributors {
                    got: accepted.len() as u32,
                    needed,
                }
            } else {
                AbandonReason::ProofsFailed { excluded }
            };
            self.abandon(now_ms, reason);
            return;
        }
        let n = r.roster.n() as usize;
        // rank[j − 1]: j's position among the keyed members. A checker k lists every keyed
        // member but itself, ascending, so member j sits at rank(j) − 1 if k is before it.
        let mut rank = alloc::vec![usize::MAX; n];
        for (at, &j) in keyed.iter().enumerate() {
            rank[j as usize - 1] = at;
        }
        for (i, &at_rank) in rank.iter().enumerate() {
            if !r.live[i] || at_rank == usize::MAX {
                continue;
            }
            let to = i as u32 + 1;
            let mut sealed = ShareList::with_capacity(VERDICT_PLAIN_LEN + TAG_LEN, keyed.len());
            // By dealer, ascending: the sealed copy for `to` of the dealer's checker's verdict.
            for (d, got) in received.iter().enumerate() {
                let (Some((_, list)), Some(k)) = (got, checkers[d]) else {
                    continue;
                };
                if k == to {
                    continue;
                }
                let at = if k < to { at_rank - 1 } else { at_rank };
                let (addressed, item) = list.get(at);
                debug_assert_eq!(addressed, to, "lists checked on arrival");
                sealed.push(d as u32 + 1, item);
            }
            self.out.push_back(HospitalOutput::Send {
                to: r.peers[i],
                msg: RelayToPatient::Verdicts(Verdicts {
                    round: r.roster.round,
                    sealed,
                }),
            });
        }
        self.out.push_back(HospitalOutput::Event(
            crate::protocol::HospitalEvent::ProofsChecked {
                study: self.spec.params.id.clone(),
                round: r.roster.round,
                accepted: accepted.len() as u32,
                excluded: excluded.clone(),
            },
        ));
        r.state = RoundState::AwaitingPartialSums {
            contributors: accepted,
            excluded,
            partials: (0..n).map(|_| None).collect(),
            count: 0,
        };
        r.deadline = now_ms.saturating_add(self.spec.deadlines.partials_ms);
        self.round = Some(r);
    }
}
