//! The rounds a patient has taken part in, per study: a relay that replays a round id, or asks
//! for a second partial sum in a round (also after a reconnect), is refused. The browser keeps
//! this in `sessionStorage` across reconnects (see [`SeenRounds::to_json`]); the native patient
//! keeps it for the life of its process.

use alloc::collections::BTreeMap;
use alloc::string::String;
use serde::{Deserialize, Serialize};

/// Most rounds remembered; older ones are folded into a floor below which every round id is
/// refused (round ids only grow).
pub const MAX_SEEN: usize = 1024;

/// Round ids seen for one study, and whether a partial sum was sent in each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenRounds {
    /// Study id these rounds belong to.
    pub study: String,
    /// Round id → whether this patient sent its partial sum in it.
    rounds: BTreeMap<u64, bool>,
    /// Every round id at or below this is refused (set when old entries are dropped).
    floor: Option<u64>,
}

impl SeenRounds {
    /// Nothing seen yet for `study`.
    pub fn new(study: &str) -> SeenRounds {
        SeenRounds {
            study: study.into(),
            ..SeenRounds::default()
        }
    }

    /// Whether `round` was seen (or is below the floor).
    pub fn contains(&self, round: u64) -> bool {
        self.floor.is_some_and(|f| round <= f) || self.rounds.contains_key(&round)
    }

    /// Whether a partial sum was sent in `round`.
    pub fn answered(&self, round: u64) -> bool {
        self.floor.is_some_and(|f| round <= f) || self.rounds.get(&round) == Some(&true)
    }

    /// Records that `round` was seen.
    pub fn insert(&mut self, round: u64) {
        self.rounds.entry(round).or_insert(false);
        while self.rounds.len() > MAX_SEEN {
            if let Some((r, _)) = self.rounds.pop_first() {
                self.floor = Some(self.floor.map_or(r, |f| f.max(r)));
            }
        }
    }

    /// Records that a partial sum was sent in `round`.
    pub fn mark_answered(&mut self, round: u64) {
        self.insert(round);
        self.rounds.insert(round, true);
    }

    /// Adds everything in `other` (same study only; returns whether it was merged).
    pub fn merge(&mut self, other: &SeenRounds) -> bool {
        if other.study != self.study {
            return false;
        }
        for (&r, &a) in &other.rounds {
            if a {
                self.mark_answered(r);
            } else {
                self.insert(r);
            }
        }
        if let Some(f) = other.floor {
            self.floor = Some(self.floor.map_or(f, |g| g.max(f)));
        }
        true
    }

    /// As JSON, for the browser's `sessionStorage`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("seen rounds serialize")
    }

    /// From [`SeenRounds::to_json`]'s output; `None` if it does not parse.
    pub fn from_json(text: &str) -> Option<SeenRounds> {
        if text.len() > 64 * MAX_SEEN {
            return None;
        }
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_rounds_and_answers_and_survives_json() {
        let mut s = SeenRounds::new("demo");
        s.insert(3);
        s.mark_answered(4);
        assert!(s.contains(3) && !s.answered(3) && s.answered(4) && !s.contains(5));
        let back = SeenRounds::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        let mut other = SeenRounds::new("other");
        assert!(!other.merge(&s));
        let mut fresh = SeenRounds::new("demo");
        assert!(fresh.merge(&s) && fresh.answered(4));
    }

    #[test]
    fn old_rounds_fold_into_a_floor() {
        let mut s = SeenRounds::new("d");
        for r in 0..(MAX_SEEN as u64 + 10) {
            s.insert(r + 100);
        }
        assert!(s.contains(1), "below the floor is refused");
        assert!(s.answered(100));
        assert!(!s.contains(100 + MAX_SEEN as u64 + 10));
    }
}
