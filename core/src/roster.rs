//! The frozen roster of a round and its safety code.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::commitment::{Commitment, Revealed};
use crate::error::ProtocolError;
use crate::sharing::Scheme;
use crate::study::StudyParams;

/// One roster entry: a patient's index (1..=n, also its Shamir evaluation point) and its
/// commitment to its per-round public key (revealed after the roster is frozen).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Roster index, 1-based.
    pub index: u32,
    /// The member's commitment to its X25519 public key for this round.
    pub commitment: Commitment,
}

/// Everything a round is bound to: study parameters, round id, threshold and members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// Study parameters.
    pub study: StudyParams,
    /// Round id, unique within the study.
    pub round: u64,
    /// Threshold t for this round (`min(study threshold, n)`).
    pub threshold: u32,
    /// Members, in index order 1..=n.
    pub members: Vec<Member>,
}

/// A short code people compare aloud to detect a relay that substituted keys:
/// 12 decimal digits from SHA-256 over the canonical frozen roster (commitments) and every
/// revealed key and nonce, shown as `1234 5678 9012`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SafetyCode(String);

impl core::fmt::Debug for SafetyCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SafetyCode({})", self.0)
    }
}

impl core::fmt::Display for SafetyCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl SafetyCode {
    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Stands for the code while the reveals of a frozen roster are awaited.
    pub fn pending() -> SafetyCode {
        SafetyCode("(awaiting reveals)".into())
    }

    /// A code as it was computed earlier and stored as text (e.g. read back from the relay's
    /// database), the same as deserializing it. It is not recomputed or checked.
    pub fn from_stored(code: String) -> SafetyCode {
        SafetyCode(code)
    }
}

impl Roster {
    /// Number of members.
    pub fn n(&self) -> u32 {
        self.members.len() as u32
    }

    /// The sharing scheme of this round.
    pub fn scheme(&self) -> Result<Scheme, ProtocolError> {
        Scheme::new(self.n(), self.threshold).map_err(|_| ProtocolError::BadRoster)
    }

    /// Checks the structure: indices 1..=n in order, distinct commitments (else
    /// [`ProtocolError::DuplicateRosterMember`]), the threshold the study prescribes for n
    /// members, n within the study's cohort size, and the collusion rule 2t > n + c (else
    /// [`ProtocolError::ThresholdBreaksCollusionRule`]).
    pub fn check(&self) -> Result<(), ProtocolError> {
        let n = self.n();
        if n < 2 || n > self.study.size {
            return Err(ProtocolError::BadRoster);
        }
        if !crate::study::collusion_rule_holds(n, self.threshold, self.study.colluders) {
            return Err(ProtocolError::ThresholdBreaksCollusionRule {
                n,
                threshold: self.threshold,
                colluders: self.study.colluders,
            });
        }
        if self.threshold != self.study.round_threshold(n) {
            return Err(ProtocolError::BadRoster);
        }
        for (i, m) in self.members.iter().enumerate() {
            if m.index != i as u32 + 1 {
                return Err(ProtocolError::BadRoster);
            }
        }
        let mut keys: Vec<&Commitment> = self.members.iter().map(|m| &m.commitment).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(ProtocolError::DuplicateRosterMember);
        }
        Ok(())
    }

    /// The member with roster index `index`.
    pub fn member(&self, index: u32) -> Option<&Member> {
        index
            .checked_sub(1)
            .and_then(|i| self.members.get(i as usize))
    }

    /// The safety code: SHA-256 over a length-prefixed canonical encoding of the study
    /// parameters (as JSON, whose field order is fixed by this crate), round, threshold, every
    /// `(index, commitment)` and every revealed `(index, public key, nonce)`; 12 digits.
    pub fn safety_code(&self, reveals: &[Revealed]) -> SafetyCode {
        self.safety_code_digits(reveals, 12)
    }

    /// The safety code with `digits` digits (1..=18). Only [`Roster::safety_code`]'s 12 are
    /// shown to people; fewer exist so tests can grind collisions quickly.
    pub fn safety_code_digits(&self, reveals: &[Revealed], digits: u32) -> SafetyCode {
        let digits = digits.clamp(1, 18);
        let mut h = Sha256::new();
        h.update(b"cohort/v2 roster");
        let params = serde_json::to_vec(&self.study).expect("study parameters serialize");
        h.update((params.len() as u64).to_be_bytes());
        h.update(&params);
        h.update(self.round.to_be_bytes());
        h.update(self.threshold.to_be_bytes());
        h.update(self.n().to_be_bytes());
        for m in &self.members {
            h.update(m.index.to_be_bytes());
            h.update(m.commitment.0);
        }
        h.update((reveals.len() as u64).to_be_bytes());
        for r in reveals {
            h.update(r.index.to_be_bytes());
            h.update(r.public_key.0);
            h.update(r.nonce.0);
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let x = u64::from_be_bytes(first) % 10u64.pow(digits);
        let s = format!("{x:0width$}", width = digits as usize);
        let groups: Vec<&str> = s
            .as_bytes()
            .chunks(4)
            .map(|c| core::str::from_utf8(c).expect("ascii digits"))
            .collect();
        SafetyCode(groups.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        Roster {
            study: StudyParams::demo(),
            round: 1,
            threshold: 3,
            members: (1..=3)
                .map(|i| Member {
                    index: i,
                    commitment: Commitment([i as u8; 32]),
                })
                .collect(),
        }
    }

    #[test]
    fn safety_code_covers_everything() {
        let r = roster();
        r.check().unwrap();
        let reveals = [Revealed {
            index: 1,
            public_key: crate::envelope::PublicKey([9; 32]),
            nonce: crate::commitment::Nonce([8; 32]),
        }];
        let code = r.safety_code(&reveals);
        assert_eq!(code.as_str().len(), 14);
        assert_eq!(code, roster().safety_code(&reveals), "deterministic");
        let mut changed = roster();
        changed.members[1].commitment.0[31] ^= 1;
        assert_ne!(
            changed.safety_code(&reveals),
            code,
            "a substituted commitment changes the code"
        );
        let mut other = reveals.clone();
        other[0].nonce.0[0] ^= 1;
        assert_ne!(r.safety_code(&other), code, "the nonces are covered");
        let mut changed = roster();
        changed.round = 2;
        assert_ne!(changed.safety_code(&reveals), code);
        let mut changed = roster();
        changed.study.max = crate::decimal::Decimal::from_int(250).unwrap();
        assert_ne!(changed.safety_code(&reveals), code);
        assert_eq!(r.safety_code_digits(&reveals, 3).as_str().len(), 3);
    }

    #[test]
    fn check_refuses_malformed_rosters() {
        let mut r = roster();
        r.members[2].index = 4;
        assert_eq!(r.check(), Err(ProtocolError::BadRoster));
        let mut r = roster();
        r.members[2].commitment = r.members[0].commitment;
        assert_eq!(r.check(), Err(ProtocolError::DuplicateRosterMember));
        let mut r = roster();
        r.threshold = 2;
        assert_eq!(r.check(), Err(ProtocolError::BadRoster));
    }
}
