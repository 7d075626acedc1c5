//! Study parameters: what is asked, in which unit and range, and how the cohort is formed.
//!
//! A study is checked once, when it is created, so that nothing later can overflow the field:
//! `size × (range in fixed point)² < p` is refused otherwise.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

use crate::decimal::Decimal;
use crate::error::StudyError;
use crate::field::MODULUS;

/// Largest cohort a study may ask for.
pub const MAX_COHORT: u32 = 10_000;
/// Largest number of histogram buckets.
pub const MAX_BUCKETS: u16 = 1_000;
/// Most fractional digits a study may ask for.
pub const MAX_DECIMALS: u8 = 6;
/// Largest `size × (buckets + 3)`: bounds the share frames of a round.
pub const MAX_SIZE_TIMES_VECTOR: usize = 1 << 18;
/// Longest study id, question or unit, in bytes.
pub const MAX_TEXT: usize = 200;

/// The public parameters of a study. Every patient in a round checks that the roster carries
/// exactly the parameters it joined, and the safety code covers all of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyParams {
    /// Identifier: 1–64 characters of `a-z`, `0-9`, `-`, `_`.
    pub id: String,
    /// The question shown to patients, e.g. "What is your height?".
    pub question: String,
    /// The unit of the value, e.g. "cm".
    pub unit: String,
    /// Smallest allowed value.
    pub min: Decimal,
    /// Largest allowed value.
    pub max: Decimal,
    /// Fractional digits a value may have.
    pub decimals: u8,
    /// Number of equal-width histogram buckets over `[min, max]`.
    pub buckets: u16,
    /// Cohort size: the roster is frozen as soon as this many patients have joined.
    pub size: u32,
    /// Shamir threshold t: any t partial sums reconstruct the aggregate, and any coalition of
    /// the relay with fewer than t patients learns nothing. A round with n < t patients uses
    /// t = n (plain additive sharing).
    pub threshold: u32,
    /// Small-cell suppression: patients refuse a roster or contributor set smaller than this.
    pub min_cohort: u32,
    /// The study's declared bound c on patients that may collude with the relay (default 0,
    /// at most t − 1). Patients refuse a roster unless 2t > n + c: then any two sets of t
    /// partial sums share an honest patient, so the relay can reconstruct over one contributor
    /// set only. Each colluder allowed for costs one tolerated dropout.
    #[serde(default)]
    pub colluders: u32,
}

/// The collusion rule every patient checks on a roster of `n` with threshold `t`: 2t > n + c.
pub fn collusion_rule_holds(n: u32, t: u32, colluders: u32) -> bool {
    2 * u64::from(t) > u64::from(n) + u64::from(colluders)
}

impl StudyParams {
    /// A demo study: heights in cm, 0–300 with one decimal, 10 buckets, cohort of 3.
    pub fn demo() -> StudyParams {
        StudyParams {
            id: "demo".into(),
            question: "What is your height?".into(),
            unit: "cm".into(),
            min: Decimal::from_int(0).expect("small"),
            max: Decimal::from_int(300).expect("small"),
            decimals: 1,
            buckets: 10,
            size: 3,
            threshold: 3,
            min_cohort: 3,
            colluders: 0,
        }
    }

    /// Checks every parameter, including that no aggregate can wrap the field.
    pub fn validate(&self) -> Result<(), StudyError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(StudyError::BadId);
        }
        if self.question.len() > MAX_TEXT
            || self.unit.len() > MAX_TEXT
            || self.question.chars().any(char::is_control)
            || self.unit.chars().any(char::is_control)
        {
            return Err(StudyError::BadText);
        }
        if self.decimals > MAX_DECIMALS {
            return Err(StudyError::TooManyDecimals { max: MAX_DECIMALS });
        }
        let lo = self
            .min
            .to_scaled(self.decimals)
            .map_err(|_| StudyError::BadRange)?;
        let hi = self
            .max
            .to_scaled(self.decimals)
            .map_err(|_| StudyError::BadRange)?;
        if lo >= hi {
            return Err(StudyError::BadRange);
        }
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return Err(StudyError::BadBuckets { max: MAX_BUCKETS });
        }
        if self.size < 2 || self.size > MAX_COHORT {
            return Err(StudyError::BadSize { max: MAX_COHORT });
        }
        if self.threshold < 2 || self.threshold > self.size {
            return Err(StudyError::BadThreshold);
        }
        if self.colluders >= self.threshold
            || !collusion_rule_holds(self.size, self.threshold, self.colluders)
        {
            return Err(StudyError::BreaksCollusionRule);
        }
        if self.min_cohort < 2 || self.min_cohort > self.size {
            return Err(StudyError::BadMinCohort);
        }
        if self.size as usize * self.vector_len() > MAX_SIZE_TIMES_VECTOR {
            return Err(StudyError::TooLarge);
        }
        let range = (hi - lo) as u128;
        if u128::from(self.size) * range * range >= u128::from(MODULUS) {
            return Err(StudyError::WouldOverflow);
        }
        Ok(())
    }

    /// The range `max − min` in fixed-point units (a positive integer once validated).
    pub fn range_scaled(&self) -> u64 {
        let lo = self.min.to_scaled(self.decimals).unwrap_or(0);
        let hi = self.max.to_scaled(self.decimals).unwrap_or(0);
        hi.saturating_sub(lo).max(1) as u64
    }

    /// Length of the statistics vector: `[1, x, x², bucket…]`.
    pub fn vector_len(&self) -> usize {
        3 + usize::from(self.buckets)
    }

    /// The threshold used by a round whose roster has `n` members.
    pub fn round_threshold(&self, n: u32) -> u32 {
        self.threshold.min(n)
    }

    /// Lower edge of every bucket and the upper edge of the last, in the study's unit.
    pub fn bucket_edges(&self) -> Vec<f64> {
        let lo = self.min.to_f64();
        let width = (self.max.to_f64() - lo) / f64::from(self.buckets);
        (0..=self.buckets)
            .map(|b| lo + width * f64::from(b))
            .collect()
    }
}

/// How long each phase of a round may take, in milliseconds. `None` waits forever.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    /// From the first join: after this, a round starts with whoever joined if that is at least
    /// the minimum cohort (otherwise enrolment continues).
    pub enrol_ms: Option<u64>,
    /// From the roster: patients that have not sent their shares by then are left out.
    pub shares_ms: u64,
    /// From the delivery of shares: after this the round completes with the partial sums it has,
    /// or is abandoned if they are fewer than the threshold.
    pub partials_ms: u64,
}

impl Default for Deadlines {
    /// Defaults that suit people in browsers: no enrolment deadline, a minute per later phase.
    fn default() -> Deadlines {
        Deadlines {
            enrol_ms: None,
            shares_ms: 60_000,
            partials_ms: 60_000,
        }
    }
}

/// Everything the hospital needs to run a study: public parameters, deadlines and an optional
/// invite code. Parsed from the `--study` flag form
/// `id=height,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    /// Public parameters.
    pub params: StudyParams,
    /// Phase deadlines.
    #[serde(default)]
    pub deadlines: Deadlines,
    /// If set, only patients presenting this code may join.
    #[serde(default)]
    pub invite: Option<String>,
}

impl core::fmt::Debug for StudySpec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StudySpec")
            .field("params", &self.params)
            .field("deadlines", &self.deadlines)
            .field("invite", &self.invite.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl StudySpec {
    /// Validates the parameters and the invite code.
    pub fn validate(&self) -> Result<(), StudyError> {
        self.params.validate()?;
        if let Some(code) = &self.invite
            && (code.is_empty() || code.len() > 128 || code.chars().any(char::is_control))
        {
            return Err(StudyError::BadInvite);
        }
        Ok(())
    }
}

impl FromStr for StudySpec {
    type Err = StudyError;

    /// Parses `key=value` pairs separated by commas. Keys: `id` (required), `question`, `unit`,
    /// `min`, `max`, `decimals`, `buckets`, `size`, `threshold` (default: size), `min_cohort`
    /// (default: min(3, size)), `colluders` (default 0), `enrol_s`, `shares_s`, `partials_s`, `invite`.
    fn from_str(s: &str) -> Result<StudySpec, StudyError> {
        let mut p = StudyParams::demo();
        p.id = String::new();
        let mut deadlines = Deadlines::default();
        let mut invite = None;
        let mut threshold = None;
        let mut min_cohort = None;
        for pair in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or(StudyError::BadSpec)?;
            let (k, v) = (k.trim(), v.trim());
            let int = |v: &str| v.parse::<u64>().map_err(|_| StudyError::BadSpec);
            let secs = |v: &str| int(v).map(|s| s.saturating_mul(1000));
            match k {
                "id" => p.id = v.to_string(),
                "question" => p.question = v.to_string(),
                "unit" => p.unit = v.to_string(),
                "min" => p.min = v.parse().map_err(|_| StudyError::BadRange)?,
                "max" => p.max = v.parse().map_err(|_| StudyError::BadRange)?,
                "decimals" => p.decimals = int(v)?.try_into().map_err(|_| StudyError::BadSpec)?,
                "buckets" => p.buckets = int(v)?.try_into().map_err(|_| StudyError::BadSpec)?,
                "size" => p.size = int(v)?.try_into().map_err(|_| StudyError::BadSpec)?,
                "threshold" => {
                    threshold = Some(int(v)?.try_into().map_err(|_| StudyError::BadSpec)?)
                }
                "min_cohort" => {
                    min_cohort = Some(int(v)?.try_into().map_err(|_| StudyError::BadSpec)?)
                }
                "colluders" => p.colluders = int(v)?.try_into().map_err(|_| StudyError::BadSpec)?,
                "enrol_s" => deadlines.enrol_ms = Some(secs(v)?),
                "shares_s" => deadlines.shares_ms = secs(v)?,
                "partials_s" => deadlines.partials_ms = secs(v)?,
                "invite" => invite = Some(v.to_string()),
                _ => return Err(StudyError::UnknownKey),
            }
        }
        p.threshold = threshold.unwrap_or(p.size);
        p.min_cohort = min_cohort.unwrap_or(p.size.min(3));
        let spec = StudySpec {
            params: p,
            deadlines,
            invite,
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_valid() {
        StudyParams::demo().validate().unwrap();
    }

    #[test]
    fn parses_the_flag_form() {
        let spec: StudySpec =
            "id=height,size=5,threshold=3,min=0,max=300,decimals=1,buckets=10,shares_s=5,invite=abc"
                .parse()
                .unwrap();
        assert_eq!(spec.params.id, "height");
        assert_eq!(spec.params.size, 5);
        assert_eq!(spec.params.threshold, 3);
        assert_eq!(spec.params.min_cohort, 3);
        assert_eq!(spec.params.range_scaled(), 3000);
        assert_eq!(spec.deadlines.shares_ms, 5000);
        assert_eq!(spec.invite.as_deref(), Some("abc"));
        assert!(
            !format!("{spec:?}").contains("abc"),
            "invite code must not be in Debug"
        );
        let spec: StudySpec = "id=x,size=4".parse().unwrap();
        assert_eq!(spec.params.threshold, 4);
        let spec: StudySpec = "id=x,size=5,threshold=4,colluders=2".parse().unwrap();
        assert_eq!(spec.params.colluders, 2);
    }

    #[test]
    fn refuses_bad_studies() {
        let cases = [
            ("id=Bad", StudyError::BadId),
            ("id=a,size=1000,buckets=1000", StudyError::TooLarge),
            ("id=a,size=1", StudyError::BadSize { max: MAX_COHORT }),
            ("id=a,size=3,threshold=4", StudyError::BadThreshold),
            ("id=a,size=3,threshold=1", StudyError::BadThreshold),
            ("id=a,min=5,max=5", StudyError::BadRange),
            ("id=a,min=0.05,max=5,decimals=1", StudyError::BadRange),
            (
                "id=a,buckets=0",
                StudyError::BadBuckets { max: MAX_BUCKETS },
            ),
            ("id=a,colour=blue", StudyError::UnknownKey),
            ("id=a,size=4,threshold=2", StudyError::BreaksCollusionRule),
            (
                "id=a,size=5,threshold=3,colluders=1",
                StudyError::BreaksCollusionRule,
            ),
            (
                "id=a,size=3,threshold=3,colluders=3",
                StudyError::BreaksCollusionRule,
            ),
            ("id=a,size", StudyError::BadSpec),
            (
                "id=a,decimals=7",
                StudyError::TooManyDecimals { max: MAX_DECIMALS },
            ),
            // 10,000 × (10^9)² wraps a 61-bit field.
            (
                "id=a,size=10000,min=0,max=1000000,decimals=3",
                StudyError::WouldOverflow,
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(spec.parse::<StudySpec>().err(), Some(want), "{spec}");
        }
    }

    #[test]
    fn overflow_bound_is_tight() {
        // size × range² must stay below p = 2^61 − 1 ≈ 2.3e18.
        let ok: StudySpec = "id=a,size=2,min=0,max=1000000000,decimals=0"
            .parse()
            .unwrap();
        assert_eq!(ok.params.range_scaled(), 1_000_000_000);
        assert_eq!(
            "id=a,size=3,min=0,max=1000000000,decimals=0"
                .parse::<StudySpec>()
                .err(),
            Some(StudyError::WouldOverflow)
        );
    }
}
