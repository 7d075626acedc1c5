//! The hospital's side of validity proofs: it combines each patient's masked verifier entries
//! for the checker of each proof (`verify` → `checks`, one per proof: in additive rounds their
//! sum, in Shamir rounds every entry), forwards each checker's verdicts to everyone with the
//! sum of the verdict tags addressed to them (`verdict` → `verdicts`), and settles the
//! contributor set of the partial sums: the contributors whose checker found their proof
//! valid. It reads the verdicts in clear to know that set; the patients trust them only
//! through the tags (see [`crate::proof`]).

use alloc::vec::Vec;

use super::{Hospital, RoundState};
use crate::error::ProtocolError;
use crate::frame::ShareList;
use crate::message::{
    AbandonReason, Checks, RelayToPatient, Verdict as VerdictMsg, Verdicts, Verify,
};
use crate::proof::{self, VERDICT_TAG_LEN, VERIFY_ENTRY_LEN};
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
        let r = self.round.as_mut().expect("member_index checked");
        let additive = matches!(r.scheme, Scheme::Additive { .. });
        let RoundState::AwaitingVerify {
            contributors,
            received,
            sums,
            lists,
            count,
        } = &mut r.state
        else {
            return Err(ProtocolError::WrongState {
                state: r.state.phase().as_str(),
                got: "verify",
            });
        };
        if received[me as usize - 1] {
            return Err(ProtocolError::DuplicateShares);
        }
        // One entry per dealer whose proof share this member holds, tagged with the dealer,
        // ascending: a walk along the contributors (all keyed), which are ascending too.
        let mut at = 0;
        let ok = (v.checks.is_empty() || v.checks.sealed_len() == VERIFY_ENTRY_LEN)
            && v.checks.iter().all(|(dealer, _)| {
                while at < contributors.len() && contributors[at] < dealer {
                    at += 1;
                }
                let fine = dealer != me && contributors.get(at) == Some(&dealer);
                at += 1;
                fine
            });
        if !ok || (additive && !sums.add(&v.checks)) {
            return Err(ProtocolError::BadShares);
        }
        // Shamir rounds check the contributors' points only (`proof::verifiers_of`): a
        // member whose own shares never arrived sends its entries, which are not forwarded.
        if !additive && contributors.binary_search(&me).is_ok() {
            lists[me as usize - 1] = Some(v.checks);
        }
        received[me as usize - 1] = true;
        *count += 1;
        if self.all_live_reported() {
            self.send_checks(now_ms);
        }
        Ok(())
    }

    /// Sends every checker the verifier entries of its checkee's proof: their sum (additive
    /// rounds) or each of them (Shamir rounds).
    pub(super) fn send_checks(&mut self, now_ms: u64) {
        let keyed = self.keyed_list();
        let Some(mut r) = self.round.take() else {
            return;
        };
        let RoundState::AwaitingVerify {
            contributors,
            sums,
            lists,
            ..
        } = &mut r.state
        else {
            self.round = Some(r);
            return;
        };
        let additive = matches!(r.scheme, Scheme::Additive { .. });
        let n = r.roster.n() as usize;
        let mut checkers: Vec<Option<u32>> = alloc::vec![None; n];
        for &c in contributors.iter() {
            let Some((k, _)) = proof::checker_of(&keyed, contributors, c) else {
                continue;
            };
            if !r.live[k as usize - 1] {
                continue;
            }
            let checks = if additive {
                let mut one = ShareList::with_capacity(VERIFY_ENTRY_LEN, 1);
                let (count, sum) = sums.entry(c);
                if count > 0 {
                    one.push(count, &sum);
                }
                one
            } else {
                route_entries(lists, c, keyed.len())
            };
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
            received: alloc::vec![None; n],
            tags: proof::VerdictTags::new(n),
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
            tags,
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
        // One tag for every other keyed member, ascending.
        let others = keyed.iter().copied().filter(|&j| j != me);
        let ok = v.tags.sealed_len() == VERDICT_TAG_LEN
            && v.tags.len() == keyed.len() - 1
            && v.tags.iter().zip(others).all(|((to, _), want)| to == want);
        if !ok || !tags.add(&v.tags) {
            return Err(ProtocolError::BadShares);
        }
        received[dealer - 1] = Some(v.verdict);
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
            received,
            tags,
            ..
        } = &mut r.state
        else {
            self.round = Some(r);
            return;
        };
        let (accepted, excluded, listed) = proof::settle(contributors, received);
        let t = r.roster.threshold;
        let additive = matches!(r.scheme, Scheme::Additive { .. });
        let needed = proof::contributors_needed(r.scheme, r.roster.study.min_cohort, r.roster.n());
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
        for &to in &keyed {
            let i = to as usize - 1;
            if !r.live[i] {
                continue;
            }
            self.out.push_back(HospitalOutput::Send {
                to: r.peers[i],
                msg: RelayToPatient::Verdicts(Verdicts {
                    round: r.roster.round,
                    tag: tags.sum(to),
                    listed: listed.clone(),
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

/// The entries for `dealer`'s proof from every member's `verify` list (Shamir rounds), tagged
/// with the verifier. Each list is ascending by dealer: a binary search finds the entry.
fn route_entries(lists: &[Option<ShareList>], dealer: u32, keyed: usize) -> ShareList {
    let mut checks = ShareList::with_capacity(VERIFY_ENTRY_LEN, keyed);
    for (j, list) in lists.iter().enumerate() {
        let Some(list) = list else { continue };
        let (mut lo, mut hi) = (0, list.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if list.get(mid).0 < dealer {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < list.len() && list.get(lo).0 == dealer {
            checks.push(j as u32 + 1, list.get(lo).1);
        }
    }
    checks
}
