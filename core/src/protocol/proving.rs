//! The patient's side of validity proofs (see [`crate::proof`] and docs/PROTOCOL.md,
//! "Validity proofs"): dealing its proven vector, checking the proof shares it holds, deciding
//! on its checkee's proof, and reading every checker's sealed verdict.
//!
//! ```text
//! Keys ──(prove, deal, seal + check seeds + correction)──▶ Shares
//! Delivery ──(open, verifier share per dealer, sealed to its checker)──▶ Verify
//! Checks ──(combine own checkee's verifier shares, decide)──▶ Verdict (sealed to everyone)
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
    self, CHECK_SEED_LEN, CORRECTION_LABEL, Exclusion, Held, ProofSetup, VERDICT_LABEL,
    VERDICT_PLAIN_LEN, VERIFY_LABEL, VERIFY_PLAIN_LEN, Verdict,
};
use crate::sharing::Scheme;

/// What a patient keeps between its shares and its partial sum in a round with proofs.
/// `Debug` is opaque.
pub(crate) struct ProofRound {
    pub(crate) setup: ProofSetup,
    pub(crate) scheme: Scheme,
    /// The keyed members (those whose keys were forwarded), ascending.
    pub(crate) keyed: Vec<u32>,
    /// This patient's check seed for its checkee.
    pub(crate) check_seed: Zeroizing<[u8; CHECK_SEED_LEN]>,
    /// Sealing keys to each member (index − 1), and opening keys from each.
    pub(crate) to_keys: Vec<Option<DirectionKey>>,
    pub(crate) from_keys: Vec<Option<DirectionKey>>,
    /// This patient's own share of its statistics.
    pub(crate) own: Vec<Fe>,
    /// After the delivery: the contributor set as delivered and what is held from each dealer.
    pub(crate) contributors: Vec<u32>,
    pub(crate) held: BTreeMap<u32, Held>,
    /// This patient's verifier share of its checkee's proof, kept for its own check.
    pub(crate) local: Option<VerifierShare>,
    /// This patient's verdict on its checkee.
    pub(crate) verdict: Option<(u32, Verdict)>,
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
    /// Proves `stats`, deals the proven vector to the other keyed members and seals each
    /// payload (with the check seed for this patient's checkee, or random bytes for the checkee
    /// itself) and, in additive rounds, the leader's correction.
    pub(crate) fn deal<R: Rng + ?Sized>(&mut self, me: u32, stats: &[Fe], rng: &mut R) -> Dealt {
        let proven = Zeroizing::new(self.setup.prove(stats, rng));
        let others: Vec<u32> = self.keyed.iter().copied().filter(|&k| k != me).collect();
        let leader = proof::checker_of(&self.keyed, me).expect("me is keyed");
        let checkee = proof::checkee_of(&self.keyed, me).expect("me is keyed");
        let mut deal = proof::deal(
            self.scheme,
            &proven,
            self.setup.stats_len(),
            me,
            &others,
            leader,
            rng,
        );
        let plain_len = self.setup.payload_len(self.scheme) + CHECK_SEED_LEN;
        let mut shares = ShareList::with_capacity(plain_len + TAG_LEN, others.len());
        for (j, payload) in &deal.payloads {
            let mut plain = Zeroizing::new(Vec::with_capacity(plain_len));
            plain.extend_from_slice(payload);
            if *j == checkee {
                let mut junk = [0u8; CHECK_SEED_LEN];
                rng.fill_bytes(&mut junk);
                plain.extend_from_slice(&junk);
            } else {
                plain.extend_from_slice(&self.check_seed[..]);
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
    /// can check, and returns the `verify` message (verifier shares sealed to each checker).
    pub(crate) fn on_delivery(&mut self, me: u32, d: &Delivery) -> Result<Verify, ProtocolError> {
        let checkee = proof::checkee_of(&self.keyed, me).expect("me is keyed");
        let additive = matches!(self.scheme, Scheme::Additive { .. });
        let c = &d.contributors;
        // The correction: exactly the checkee's, in additive rounds where it contributed.
        let want_extra = additive && checkee != me && c.binary_search(&checkee).is_ok();
        let correction = match (want_extra, d.extra.len()) {
            (false, 0) => None,
            (true, 1) if d.extra.get(0).0 == checkee => {
                let key = self.from_keys[checkee as usize - 1]
                    .as_ref()
                    .ok_or(ProtocolError::BadDelivery)?;
                let plain = key
                    .derive(CORRECTION_LABEL)
                    .open_bytes(d.extra.get(0).1, self.setup.share_len() * 8)
                    .map_err(|source| ProtocolError::Seal {
                        from: checkee,
                        source,
                    })?;
                Some(plain)
            }
            _ => return Err(ProtocolError::BadDelivery),
        };
        let payload_len = self.setup.payload_len(self.scheme);
        let mut seeds: BTreeMap<u32, Zeroizing<[u8; CHECK_SEED_LEN]>> = BTreeMap::new();
        for (from, sealed) in d.shares.iter() {
            let key = self.from_keys[from as usize - 1]
                .as_ref()
                .ok_or(ProtocolError::BadDelivery)?;
            let plain = key
                .open_bytes(sealed, payload_len + CHECK_SEED_LEN)
                .map_err(|source| ProtocolError::Seal { from, source })?;
            let (payload, seed) = plain.split_at(payload_len);
            let extra = if from == checkee {
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
            let mut s = Zeroizing::new([0u8; CHECK_SEED_LEN]);
            s.copy_from_slice(seed);
            seeds.insert(from, s);
        }
        let mut out: Vec<(u32, Vec<u8>)> = Vec::new();
        for (&dealer, held) in &self.held {
            let Some(checker) = proof::checker_of(&self.keyed, dealer) else {
                continue;
            };
            let seed = if checker == me {
                &self.check_seed
            } else if let Some(s) = seeds.get(&checker) {
                s
            } else {
                continue; // the checker's shares were not delivered: nobody can check this proof
            };
            let rand = self.setup.check_rand(seed);
            let role = match self.scheme {
                Scheme::Additive { .. } if checker == me => ShareRole::AdditiveLeader,
                Scheme::Additive { .. } => ShareRole::AdditiveHelper,
                Scheme::Shamir { .. } => ShareRole::Shamir,
            };
            let v = self.setup.verify_share(&held.proven, role, &rand);
            if checker == me {
                self.local = Some(v);
            } else {
                let plain: Zeroizing<Vec<u8>> =
                    Zeroizing::new(v.0.iter().flat_map(|x| x.to_le_bytes()).collect());
                let key = self.to_keys[checker as usize - 1]
                    .as_ref()
                    .ok_or(ProtocolError::BadDelivery)?;
                out.push((checker, key.derive(VERIFY_LABEL).seal_bytes(&plain)));
            }
        }
        out.sort_unstable_by_key(|(k, _)| *k);
        let mut checks = ShareList::with_capacity(VERIFY_PLAIN_LEN + TAG_LEN, out.len());
        for (k, sealed) in &out {
            checks.push(*k, sealed);
        }
        self.contributors = d.contributors.clone();
        Ok(Verify {
            round: d.round,
            checks,
        })
    }

    /// Whether this patient checks a proof in this round: its checkee contributed.
    pub(crate) fn expects_checks(&self, me: u32) -> bool {
        let checkee = proof::checkee_of(&self.keyed, me).expect("me is keyed");
        checkee != me && self.contributors.binary_search(&checkee).is_ok()
    }

    /// Combines the verifier shares of this patient's checkee's proof, decides, and returns
    /// the `verdict` message (sealed to every other keyed member).
    pub(crate) fn on_checks(&mut self, me: u32, c: &Checks) -> Result<VerdictMsg, ProtocolError> {
        let checkee = proof::checkee_of(&self.keyed, me).expect("me is keyed");
        if c.dealer != checkee {
            return Err(ProtocolError::BadDelivery);
        }
        let mut shares: Vec<(u32, VerifierShare)> = Vec::with_capacity(c.checks.len() + 1);
        let mut last = 0u32;
        for (from, sealed) in c.checks.iter() {
            if from <= last || from == me || from == checkee || !self.keyed.contains(&from) {
                return Err(ProtocolError::BadDelivery);
            }
            last = from;
            let Some(key) = self.from_keys[from as usize - 1].as_ref() else {
                return Err(ProtocolError::BadDelivery);
            };
            // A share that does not open counts as missing: the proof may then not be checkable.
            let Ok(plain) = key
                .derive(VERIFY_LABEL)
                .open_bytes(sealed, VERIFY_PLAIN_LEN)
            else {
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
        if let Some(local) = self.local {
            shares.push((me, local));
        }
        shares.sort_unstable_by_key(|(i, _)| *i);
        let verifiers: Vec<u32> = self
            .contributors
            .iter()
            .copied()
            .filter(|&j| j != checkee)
            .collect();
        let verdict = proof::decide(self.scheme, &verifiers, &shares);
        self.verdict = Some((checkee, verdict));
        let plain = proof::verdict_plain(checkee, verdict);
        let mut sealed = ShareList::with_capacity(VERDICT_PLAIN_LEN + TAG_LEN, self.keyed.len());
        for &j in self.keyed.iter().filter(|&&j| j != me) {
            let key = self.to_keys[j as usize - 1]
                .as_ref()
                .ok_or(ProtocolError::BadDelivery)?;
            sealed.push(j, &key.derive(VERDICT_LABEL).seal_bytes(&plain));
        }
        Ok(VerdictMsg {
            round: c.round,
            dealer: checkee,
            verdict,
            sealed,
        })
    }

    /// Reads every checker's sealed verdict and returns the contributor set of the partial
    /// sums (the contributors whose proof a checker found valid) and the exclusions.
    pub(crate) fn on_verdicts(
        &mut self,
        me: u32,
        v: &Verdicts,
    ) -> Result<(Vec<u32>, Vec<Exclusion>), ProtocolError> {
        let mut verdicts: BTreeMap<u32, Verdict> = BTreeMap::new();
        if let Some((dealer, verdict)) = self.verdict {
            verdicts.insert(dealer, verdict);
        }
        let mut last = 0u32;
        for (from, sealed) in v.sealed.iter() {
            if from <= last || from == me || !self.keyed.contains(&from) {
                return Err(ProtocolError::BadDelivery);
            }
            last = from;
            let key = self.from_keys[from as usize - 1]
                .as_ref()
                .ok_or(ProtocolError::BadDelivery)?;
            let plain = key
                .derive(VERDICT_LABEL)
                .open_bytes(sealed, VERDICT_PLAIN_LEN)
                .map_err(|source| ProtocolError::Seal { from, source })?;
            let (dealer, verdict) =
                proof::read_verdict(&plain).ok_or(ProtocolError::BadDelivery)?;
            if Some(dealer) != proof::checkee_of(&self.keyed, from) {
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
