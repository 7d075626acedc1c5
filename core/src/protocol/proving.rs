//! The patient's side of validity proofs (see [`crate::proof`] and docs/PROTOCOL.md,
//! "Validity proofs"): dealing its proven vector, checking the proof shares it holds, deciding
//! on its checkee's proof, and checking the verdicts against the sum of their tags.
//!
//! ```text
//! Keys ──(prove, deal, seal + check seeds + correction)──▶ Shares
//! Delivery ──(open, verifier share per dealer, masked and tagged for its checker)──▶ Verify
//! Checks × (each proof it checks: at most two) ──(unmask, decide)──▶ Verdict (a tag for each)
//! Verdicts ──(check the tags' sum, contributor set = the valid ones)──▶ PartialSum
//! ```

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use rand_core::Rng;
use zeroize::Zeroizing;

use crate::envelope::{DirectionKey, TAG_LEN};
use crate::error::{ProtocolError, SealError};
use crate::field::Fe;
use crate::flp::ShareRole;
use crate::frame::ShareList;
use crate::message::{Checks, Delivery, Verdict as VerdictMsg, Verdicts, Verify};
pub(crate) use crate::proof::NO_VERDICT;
use crate::proof::{
    self, CHECK_SEED_LEN, CHECK_SEEDS_LEN, CORRECTION_LABEL, CheckRand, Exclusion, Folded, Held,
    ProofSetup, Slot, VERDICT_TAG_LEN, VERIFY_ENTRY_LEN, Verdict,
};
use crate::sharing::Scheme;

/// What a patient keeps between its shares and its partial sum in a round with proofs.
/// `Debug` is opaque.
pub(crate) struct ProofRound {
    pub(crate) setup: ProofSetup,
    pub(crate) scheme: Scheme,
    /// The keyed members (those whose keys were forwarded), ascending.
    pub(crate) keyed: Vec<u32>,
    /// This patient's check seeds: slot 1 (bytes 0..16) and slot 2 (16..32).
    pub(crate) check_seed: Zeroizing<[u8; CHECK_SEEDS_LEN]>,
    /// Sealing keys to each member (index − 1), and opening keys from each.
    pub(crate) to_keys: Vec<Option<DirectionKey>>,
    pub(crate) from_keys: Vec<Option<DirectionKey>>,
    /// This patient's own share of its statistics.
    pub(crate) own: Vec<Fe>,
    /// After the delivery: the contributor set as delivered and what is held from each dealer.
    pub(crate) contributors: Vec<u32>,
    pub(crate) held: BTreeMap<u32, Held>,
    /// This patient's own (folded) verifier shares of the proofs it checks, and their query
    /// randomness, by dealer.
    pub(crate) local: BTreeMap<u32, (Folded, CheckRand)>,
    /// This patient's verdicts on the proofs it checks, by dealer.
    pub(crate) verdicts: BTreeMap<u32, Verdict>,
    /// A forging patient's dealing forgery and the statistics entry it moves (attack tests
    /// only; see [`proof::Forgery::tamper`]).
    #[cfg(any(feature = "forge", feature = "test-util"))]
    pub(crate) forgery: Option<(proof::Forgery, usize)>,
}

impl core::fmt::Debug for ProofRound {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ProofRound(..)")
    }
}

/// The sealed shares and correction of a dealer with proofs.
pub(crate) struct Dealt {
    pub(crate) shares: ShareList,
    pub(crate) extra: ShareList,
}

impl ProofRound {
    /// This patient's check seed of `slot`.
    fn own_seed(&self, slot: Slot) -> &[u8] {
        match slot {
            Slot::First => &self.check_seed[..CHECK_SEED_LEN],
            Slot::Second => &self.check_seed[CHECK_SEED_LEN..],
        }
    }

    /// Proves `stats`, deals the proven vector to the other keyed members and seals each
    /// payload (with this patient's two check seeds, random bytes in the slot of the member it
    /// is hidden from) and, in additive rounds, the leader's correction.
    pub(crate) fn deal<R: Rng + ?Sized>(&mut self, me: u32, stats: &[Fe], rng: &mut R) -> Dealt {
        let proven = Zeroizing::new(self.setup.prove(stats, rng));
        let others: Vec<u32> = self.keyed.iter().copied().filter(|&k| k != me).collect();
        let leader = proof::after(&self.keyed, me, 1).expect("me is keyed");
        let hidden_from = [
            proof::before(&self.keyed, me, 1).expect("me is keyed"),
            proof::before(&self.keyed, me, 2).expect("me is keyed"),
        ];
        let mut deal = proof::deal(
            self.scheme,
            &proven,
            self.setup.stats_len(),
            me,
            &others,
            leader,
            rng,
        );
        #[cfg(any(feature = "forge", feature = "test-util"))]
        if let Some((f, entry)) = self.forgery {
            f.tamper(&mut deal, entry, &self.keyed, me);
        }
        let plain_len = self.setup.payload_len(self.scheme) + CHECK_SEEDS_LEN;
        let mut shares = ShareList::with_capacity(plain_len + TAG_LEN, others.len());
        for (j, payload) in &deal.payloads {
            let mut plain = Zeroizing::new(Vec::with_capacity(plain_len));
            plain.extend_from_slice(payload);
            for (slot, hidden) in [Slot::First, Slot::Second].into_iter().zip(hidden_from) {
                if *j == hidden {
                    let mut junk = [0u8; CHECK_SEED_LEN];
                    rng.fill_bytes(&mut junk);
                    plain.extend_from_slice(&junk);
                } else {
                    plain.extend_from_slice(self.own_seed(slot));
                }
            }
            let key = self.to_keys[*j as usize - 1].as_ref().expect("keyed");
            let pushed = shares.push(*j, &key.seal_bytes(&plain));
            debug_assert!(pushed, "payloads of one length");
        }
        // The correction (additive rounds); an empty list otherwise, of entry length 0.
        let mut extra = ShareList::with_capacity(0, 0);
        if let Some((to, bytes)) = &deal.correction {
            let key = self.to_keys[*to as usize - 1].as_ref().expect("keyed");
            extra = ShareList::with_capacity(self.setup.share_len() * 8 + TAG_LEN, 1);
            extra.push(*to, &key.derive(CORRECTION_LABEL).seal_bytes(bytes));
        }
        self.own = core::mem::take(&mut deal.own);
        Dealt { shares, extra }
    }

    /// Opens the delivery, computes this patient's verifier share of every dealer's proof it
    /// can check, and returns the `verify` message: one entry per dealer for its checker
    /// (folded, tagged and masked: [`proof::entry_bytes`]), tagged with the dealer
    /// (ascending). The shares of the proofs this patient checks itself stay here.
    pub(crate) fn on_delivery(&mut self, me: u32, d: &Delivery) -> Result<Verify, ProtocolError> {
        let additive = matches!(self.scheme, Scheme::Additive { .. });
        let c = &d.contributors;
        // The correction: exactly that of the member this patient leads (the keyed member before
        // it), in additive rounds where that member contributed.
        let led = proof::before(&self.keyed, me, 1).expect("me is keyed");
        let want_extra = additive && led != me && c.binary_search(&led).is_ok();
        let correction = match (want_extra, d.extra.len()) {
            (false, 0) => None,
            (true, 1) if d.extra.get(0).0 == led => {
                let key = self.from_keys[led as usize - 1]
                    .as_ref()
                    .ok_or(ProtocolError::BadDelivery)?;
                let plain = key
                    .derive(CORRECTION_LABEL)
                    .open_bytes(d.extra.get(0).1, self.setup.share_len() * 8)
                    .map_err(|source| ProtocolError::Seal { from: led, source })?;
                Some(plain)
            }
            _ => return Err(ProtocolError::BadDelivery),
        };
        let payload_len = self.setup.payload_len(self.scheme);
        let mut seeds: BTreeMap<u32, Zeroizing<[u8; CHECK_SEEDS_LEN]>> = BTreeMap::new();
        for (from, sealed) in d.shares.iter() {
            let key = self.from_keys[from as usize - 1]
                .as_ref()
                .ok_or(ProtocolError::BadDelivery)?;
            let plain = key
                .open_bytes(sealed, payload_len + CHECK_SEEDS_LEN)
                .map_err(|source| ProtocolError::Seal { from, source })?;
            let (payload, seed) = plain.split_at(payload_len);
            let extra = if from == led {
                correction.as_deref().map(|v| v.as_slice())
            } else {
                None
            };
            let held = proof::receive(self.scheme, &self.setup, payload, extra).ok_or(
                ProtocolError::Seal {
                    from,
                    source: SealError::OpenFailed,
                },
            )?;
            self.held.insert(from, held);
            let mut s = Zeroizing::new([0u8; CHECK_SEEDS_LEN]);
            s.copy_from_slice(seed);
            seeds.insert(from, s);
        }
        self.contributors = d.contributors.clone();
        let mut checks = ShareList::with_capacity(VERIFY_ENTRY_LEN, self.held.len());
        for (&dealer, held) in &self.held {
            let Some((checker, slot)) = proof::checker_of(&self.keyed, c, dealer) else {
                continue; // no checker contributed: nobody can check this proof
            };
            let seed: [u8; CHECK_SEED_LEN] = if checker == me {
                self.own_seed(slot).try_into().expect("a check seed")
            } else if let Some(s) = seeds.get(&checker) {
                let range = match slot {
                    Slot::First => 0..CHECK_SEED_LEN,
                    Slot::Second => CHECK_SEED_LEN..CHECK_SEEDS_LEN,
                };
                s[range].try_into().expect("a check seed")
            } else {
                continue;
            };
            let rand = self.setup.check_rand(&seed);
            // Constants are added by the holder of the correction: the dealer's leader.
            let leader = proof::after(&self.keyed, dealer, 1);
            let role = match self.scheme {
                Scheme::Additive { .. } if leader == Some(me) => ShareRole::AdditiveLeader,
                Scheme::Additive { .. } => ShareRole::AdditiveHelper,
                Scheme::Shamir { .. } => ShareRole::Shamir,
            };
            let v = self.setup.verify_share(&held.proven, role, &rand);
            let folded = Folded::of(&v, &rand);
            if checker == me {
                self.local.insert(dealer, (folded, rand));
            } else {
                let key = self.to_keys[checker as usize - 1]
                    .as_ref()
                    .ok_or(ProtocolError::BadDelivery)?;
                let pad = Zeroizing::new(proof::verify_pad(key, dealer));
                checks.push(
                    dealer,
                    &proof::entry_bytes(&folded, folded.tag(&rand), &pad),
                );
            }
        }
        Ok(Verify {
            round: d.round,
            checks,
        })
    }

    /// The dealers whose proofs this patient checks in this round (ascending): at most two.
    pub(crate) fn checkees(&self, me: u32) -> Vec<u32> {
        self.contributors
            .iter()
            .copied()
            .filter(|&c| {
                c != me
                    && proof::checker_of(&self.keyed, &self.contributors, c)
                        .is_some_and(|(k, _)| k == me)
            })
            .collect()
    }

    /// Combines the verifier entries of one checkee's proof (unmasking them), decides, and
    /// returns the `verdict` message with a verdict tag for every other keyed member.
    pub(crate) fn on_checks(&mut self, me: u32, c: &Checks) -> Result<VerdictMsg, ProtocolError> {
        let dealer = c.dealer;
        if !self.checkees(me).contains(&dealer) || self.verdicts.contains_key(&dealer) {
            return Err(ProtocolError::BadDelivery);
        }
        if c.checks.sealed_len() != VERIFY_ENTRY_LEN && !c.checks.is_empty() {
            return Err(ProtocolError::BadDelivery);
        }
        // Every verifier of the dealer's proof must have sent its entry; this patient's own
        // share is local.
        let verifiers = proof::verifiers_of(self.scheme, &self.keyed, &self.contributors, dealer);
        let others: Vec<u32> = verifiers.iter().copied().filter(|&j| j != me).collect();
        let pad_of = |from: u32| -> Result<[Fe; proof::ENTRY_ELEMENTS], ProtocolError> {
            let key = self.from_keys[from as usize - 1]
                .as_ref()
                .ok_or(ProtocolError::BadDelivery)?;
            Ok(proof::verify_pad(key, dealer))
        };
        let verdict = match (self.local.get(&dealer), self.scheme) {
            (None, _) => Verdict::NotVerified,
            (Some((local, rand)), Scheme::Additive { .. }) => {
                if c.checks.len() > 1 {
                    return Err(ProtocolError::BadDelivery);
                }
                // One entry: the sum of every other verifier's, tagged with how many were added.
                match (c.checks.iter().next(), others.len()) {
                    (Some((count, bytes)), expected) if count as usize == expected => {
                        let mut sum = proof::read_entry(bytes).ok_or(ProtocolError::BadDelivery)?;
                        for &j in &others {
                            for (s, p) in sum.iter_mut().zip(pad_of(j)?) {
                                *s -= p;
                            }
                        }
                        for (s, x) in sum.iter_mut().zip(local.0) {
                            *s += x;
                        }
                        sum[3] += local.tag(rand);
                        proof::decide_sum(&sum, rand)
                    }
                    (None, 0) => proof::decide_sum(
                        &[local.0[0], local.0[1], local.0[2], local.tag(rand)],
                        rand,
                    ),
                    _ => Verdict::NotVerified, // not every verifier's entry arrived
                }
            }
            (Some((local, rand)), Scheme::Shamir { t, .. }) => {
                let mut points: Vec<(u32, Folded)> = Vec::with_capacity(c.checks.len() + 1);
                let mut last = 0u32;
                for (from, bytes) in c.checks.iter() {
                    if from <= last || others.binary_search(&from).is_err() {
                        return Err(ProtocolError::BadDelivery);
                    }
                    last = from;
                    let mut e = proof::read_entry(bytes).ok_or(ProtocolError::BadDelivery)?;
                    for (x, p) in e.iter_mut().zip(pad_of(from)?) {
                        *x -= p;
                    }
                    let folded = Folded([e[0], e[1], e[2]]);
                    // An entry whose tag fails was changed on the way: it counts as missing,
                    // and the proof is then not checkable.
                    if folded.tag(rand) == e[3] {
                        points.push((from, folded));
                    }
                }
                points.push((me, *local));
                points.sort_unstable_by_key(|(i, _)| *i);
                proof::decide_points(t, &verifiers, &points)
            }
        };
        self.verdicts.insert(dealer, verdict);
        let mut tags = ShareList::with_capacity(VERDICT_TAG_LEN, self.keyed.len());
        for &j in self.keyed.iter().filter(|&&j| j != me) {
            let key = self.to_keys[j as usize - 1]
                .as_ref()
                .ok_or(ProtocolError::BadDelivery)?;
            tags.push(j, &proof::verdict_tag(key, dealer, verdict).to_le_bytes());
        }
        Ok(VerdictMsg {
            round: c.round,
            dealer,
            verdict,
            tags,
        })
    }

    /// Whether every proof this patient checks has its verdict.
    pub(crate) fn checked_all(&self, me: u32) -> bool {
        self.checkees(me)
            .iter()
            .all(|c| self.verdicts.contains_key(c))
    }

    /// Reads the verdicts (every contributor not found valid, with its verdict; the others
    /// valid), checks them against the sum of the verdict tags addressed to this patient, and
    /// returns the contributor set of the partial sums (the contributors whose proof its
    /// checker found valid) and the exclusions.
    pub(crate) fn on_verdicts(
        &mut self,
        me: u32,
        v: &Verdicts,
    ) -> Result<(Vec<u32>, Vec<Exclusion>), ProtocolError> {
        if v.listed.sealed_len() != 1 && !v.listed.is_empty() {
            return Err(ProtocolError::BadDelivery);
        }
        let mut listed: BTreeMap<u32, u8> = BTreeMap::new();
        let mut last = 0u32;
        for (dealer, code) in v.listed.iter() {
            if dealer <= last || self.contributors.binary_search(&dealer).is_err() {
                return Err(ProtocolError::BadDelivery);
            }
            last = dealer;
            listed.insert(dealer, code[0]);
        }
        let mut expected = 0u64;
        let mut accepted = Vec::with_capacity(self.contributors.len());
        let mut excluded = Vec::new();
        for &c in &self.contributors {
            let claimed = listed.get(&c).copied();
            let checker = proof::checker_of(&self.keyed, &self.contributors, c).map(|(k, _)| k);
            let verdict = match checker {
                // Nobody could check it: the relay must say so.
                None if claimed == Some(NO_VERDICT) => Verdict::NotVerified,
                None => return Err(ProtocolError::BadDelivery),
                // Checked here: the relay must repeat this patient's own verdict.
                Some(k) if k == me => {
                    let own = self
                        .verdicts
                        .get(&c)
                        .copied()
                        .unwrap_or(Verdict::NotVerified);
                    // Listed exactly when not valid, with this patient's own verdict's byte.
                    let repeated = match claimed {
                        None => Some(Verdict::Valid),
                        Some(b) => Verdict::from_code(b).filter(|v| *v != Verdict::Valid),
                    };
                    if repeated != Some(own) {
                        return Err(ProtocolError::ForgedVerdicts);
                    }
                    own
                }
                Some(k) => {
                    let verdict = match claimed {
                        None => Verdict::Valid,
                        // The checker sent no verdict: no tag of it in the sum.
                        Some(NO_VERDICT) => Verdict::NotVerified,
                        Some(b) => match Verdict::from_code(b) {
                            Some(Verdict::Valid) | None => {
                                return Err(ProtocolError::BadDelivery);
                            }
                            Some(verdict) => verdict,
                        },
                    };
                    if claimed != Some(NO_VERDICT) {
                        let key = self.from_keys[k as usize - 1]
                            .as_ref()
                            .ok_or(ProtocolError::BadDelivery)?;
                        expected = expected.wrapping_add(proof::verdict_tag(key, c, verdict));
                    }
                    verdict
                }
            };
            if verdict == Verdict::Valid {
                accepted.push(c);
            } else {
                excluded.push(Exclusion {
                    index: c,
                    reason: verdict,
                });
            }
        }
        if expected != v.tag {
            return Err(ProtocolError::ForgedVerdicts);
        }
        Ok((accepted, excluded))
    }

    /// This patient's partial sum over `accepted`.
    pub(crate) fn partial_sum(&self, me: u32, accepted: &[u32]) -> Vec<Fe> {
        let mut sum = if accepted.contains(&me) {
            self.own.clone()
        } else {
            alloc::vec![Fe::ZERO; self.setup.stats_len()]
        };
        for c in accepted.iter().filter(|&&c| c != me) {
            if let Some(h) = self.held.get(c) {
                for (a, b) in sum.iter_mut().zip(&h.stats) {
                    *a += *b;
                }
            }
        }
        sum
    }
}
