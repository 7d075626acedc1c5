//! The patient's side of validity proofs (see [`crate::proof`] and docs/PROTOCOL.md,
//! "Validity proofs"): dealing its proven vector, checking the proof shares it holds, deciding
//! on its checkee's proof, and reading every checker's sealed verdict.
//!
//! ```text
//! Keys ──(prove, deal, seal + check seeds + correction)──▶ Shares
//! Delivery ──(open, verifier share per dealer, sealed to its checker)──▶ Verify
//! Checks × (each proof it checks: at most two) ──(combine, decide)──▶ Verdict (sealed to all)
//! Verdicts ──(open every verdict, contributor set = the valid ones)──▶ PartialSum
//! ```

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use rand_core::Rng;
use zeroize::Zeroizing;

use crate::envelope::{DirectionKey, TAG_LEN};
use crate::error::{ProtocolError, SealError};
use crate::field::Fe;
use crate::flp::{ShareRole, VerifierShare};
use crate::frame::ShareList;
use crate::message::{Checks, Delivery, Verdict as VerdictMsg, Verdicts, Verify};
use crate::proof::{
    self, CHECK_SEED_LEN, CHECK_SEEDS_LEN, CORRECTION_LABEL, Exclusion, Held, ProofSetup, Slot,
    VERDICT_LABEL, VERDICT_PLAIN_LEN, VERIFY_LABEL, VERIFY_PLAIN_LEN, Verdict,
};
use crate::sharing::Scheme;

/// What a patient keeps between its shares and its partial sum in a round with proofs.
/// `Debug` is opaque.
pub(crate) struct ProofRound {
    pub(crate) setup: ProofSetup,
    pub(crate) scheme: Scheme,
    /// The keyed members (those whose keys were forwarded), ascending.
    pub(crate) keyed: Vec<u32>,
    /// This patient's check seeds: slot 1 (bytes 0..32) and slot 2 (32..64).
    pub(crate) check_seed: Zeroizing<[u8; CHECK_SEEDS_LEN]>,
    /// Sealing keys to each member (index − 1), and opening keys from each.
    pub(crate) to_keys: Vec<Option<DirectionKey>>,
    pub(crate) from_keys: Vec<Option<DirectionKey>>,
    /// This patient's own share of its statistics.
    pub(crate) own: Vec<Fe>,
    /// After the delivery: the contributor set as delivered and what is held from each dealer.
    pub(crate) contributors: Vec<u32>,
    pub(crate) held: BTreeMap<u32, Held>,
    /// This patient's own verifier shares of the proofs it checks, by dealer.
    pub(crate) local: BTreeMap<u32, VerifierShare>,
    /// This patient's verdicts on the proofs it checks, by dealer.
    pub(crate) verdicts: BTreeMap<u32, Verdict>,
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

/// The key label of a verifier share of `dealer`'s proof.
fn verify_label(dealer: u32) -> Vec<u8> {
    let mut l = VERIFY_LABEL.to_vec();
    l.extend_from_slice(&dealer.to_le_bytes());
    l
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
        let mut extra = ShareList::with_capacity(self.setup.share_len() * 8 + TAG_LEN, 1);
        if let Some((to, bytes)) = &deal.correction {
            let key = self.to_keys[*to as usize - 1].as_ref().expect("keyed");
            extra.push(*to, &key.derive(CORRECTION_LABEL).seal_bytes(bytes));
        }
        self.own = core::mem::take(&mut deal.own);
        Dealt { shares, extra }
    }

    /// Opens the delivery, computes this patient's verifier share of every dealer's proof it
    /// can check, and returns the `verify` message: verifier shares sealed to each dealer's
    /// checker, tagged with the dealer (ascending).
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
        let mut checks = ShareList::with_capacity(VERIFY_PLAIN_LEN + TAG_LEN, self.held.len());
        for (&dealer, held) in &self.held {
            let Some((checker, slot)) = proof::checker_of(&self.keyed, c, dealer) else {
                continue; // no checker contributed: nobody can check this proof
            };
            let seed: [u8; CHECK_SEED_LEN] = if checker == me {
                self.own_seed(slot).try_into().expect("32 bytes")
            } else if let Some(s) = seeds.get(&checker) {
                let range = match slot {
                    Slot::First => 0..CHECK_SEED_LEN,
                    Slot::Second => CHECK_SEED_LEN..CHECK_SEEDS_LEN,
                };
                s[range].try_into().expect("32 bytes")
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
            if checker == me {
                self.local.insert(dealer, v);
            } else {
                let plain: Zeroizing<Vec<u8>> =
                    Zeroizing::new(v.0.iter().flat_map(|x| x.to_le_bytes()).collect());
                let key = self.to_keys[checker as usize - 1]
                    .as_ref()
                    .ok_or(ProtocolError::BadDelivery)?;
                checks.push(
                    dealer,
                    &key.derive(&verify_label(dealer)).seal_bytes(&plain),
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

    /// Combines the verifier shares of one checkee's proof, decides, and returns the `verdict`
    /// message (sealed to every other keyed member).
    pub(crate) fn on_checks(&mut self, me: u32, c: &Checks) -> Result<VerdictMsg, ProtocolError> {
        let dealer = c.dealer;
        if !self.checkees(me).contains(&dealer) || self.verdicts.contains_key(&dealer) {
            return Err(ProtocolError::BadDelivery);
        }
        let label = verify_label(dealer);
        let mut shares: Vec<(u32, VerifierShare)> = Vec::with_capacity(c.checks.len() + 1);
        let mut last = 0u32;
        for (from, sealed) in c.checks.iter() {
            if from <= last || from == me || from == dealer || !self.keyed.contains(&from) {
                return Err(ProtocolError::BadDelivery);
            }
            last = from;
            let Some(key) = self.from_keys[from as usize - 1].as_ref() else {
                return Err(ProtocolError::BadDelivery);
            };
            // A share that does not open counts as missing: the proof is then not checkable.
            let Ok(plain) = key.derive(&label).open_bytes(sealed, VERIFY_PLAIN_LEN) else {
                continue;
            };
            let mut v = [Fe::ZERO; crate::flp::VERIFIER_LEN];
            let mut ok = true;
            for (x, b) in v.iter_mut().zip(plain.chunks_exact(8)) {
                match Fe::from_le_bytes(b.try_into().expect("chunk of 8")) {
                    Some(e) => *x = e,
                    None => ok = false,
                }
            }
            if ok {
                shares.push((from, VerifierShare(v)));
            }
        }
        if let Some(local) = self.local.get(&dealer) {
            shares.push((me, *local));
        }
        shares.sort_unstable_by_key(|(i, _)| *i);
        let verifiers: Vec<u32> = self
            .contributors
            .iter()
            .copied()
            .filter(|&j| j != dealer)
            .collect();
        let verdict = proof::decide(self.scheme, &verifiers, &shares);
        self.verdicts.insert(dealer, verdict);
        let plain = proof::verdict_plain(dealer, verdict);
        let mut sealed = ShareList::with_capacity(VERDICT_PLAIN_LEN + TAG_LEN, self.keyed.len());
        for &j in self.keyed.iter().filter(|&&j| j != me) {
            let key = self.to_keys[j as usize - 1]
                .as_ref()
                .ok_or(ProtocolError::BadDelivery)?;
            sealed.push(j, &key.derive(VERDICT_LABEL).seal_bytes(&plain));
        }
        Ok(VerdictMsg {
            round: c.round,
            dealer,
            verdict,
            sealed,
        })
    }

    /// Whether every proof this patient checks has its verdict.
    pub(crate) fn checked_all(&self, me: u32) -> bool {
        self.checkees(me)
            .iter()
            .all(|c| self.verdicts.contains_key(c))
    }

    /// Reads every checker's sealed verdict (tagged with the dealer, ascending) and returns the
    /// contributor set of the partial sums (the contributors whose proof its checker found
    /// valid) and the exclusions.
    pub(crate) fn on_verdicts(
        &mut self,
        me: u32,
        v: &Verdicts,
    ) -> Result<(Vec<u32>, Vec<Exclusion>), ProtocolError> {
        let mut verdicts = self.verdicts.clone();
        let mut last = 0u32;
        for (dealer, sealed) in v.sealed.iter() {
            let checker = proof::checker_of(&self.keyed, &self.contributors, dealer)
                .map(|(k, _)| k)
                .filter(|&k| k != me);
            let (Some(checker), true) = (checker, dealer > last) else {
                return Err(ProtocolError::BadDelivery);
            };
            last = dealer;
            let key = self.from_keys[checker as usize - 1]
                .as_ref()
                .ok_or(ProtocolError::BadDelivery)?;
            let plain = key
                .derive(VERDICT_LABEL)
                .open_bytes(sealed, VERDICT_PLAIN_LEN)
                .map_err(|source| ProtocolError::Seal {
                    from: checker,
                    source,
                })?;
            let (about, verdict) = proof::read_verdict(&plain).ok_or(ProtocolError::BadDelivery)?;
            if about != dealer {
                return Err(ProtocolError::BadDelivery);
            }
            verdicts.insert(dealer, verdict);
        }
        let mut accepted = Vec::with_capacity(self.contributors.len());
        let mut excluded = Vec::new();
        for &c in &self.contributors {
            match verdicts.get(&c) {
                Some(Verdict::Valid) => accepted.push(c),
                Some(&reason) => excluded.push(Exclusion { index: c, reason }),
                None => excluded.push(Exclusion {
                    index: c,
                    reason: Verdict::NotVerified,
                }),
            }
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
