//! Wire messages: JSON text frames, one message per frame, each an object with a `type` and a
//! protocol version `v`. Types are named by direction. Decoding is strict: unknown types or
//! fields, wrong lengths, out-of-range numbers and oversize input are typed errors.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::commitment::{Commitment, Nonce, Revealed};
use crate::encoding::Statistics;
use crate::envelope::PublicKey;
use crate::error::{DecodeError, ErrorCode, ProtocolError};
use crate::field::Fe;
use crate::frame::{self, Decoded, FrameError, FrameKind, ShareList};
use crate::questionnaire::QuestionnaireResult;
use crate::roster::{Roster, SafetyCode};
use crate::study::StudyParams;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 3;

/// Largest message either side accepts by default, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Join a study's next round with a commitment to a fresh public key (see
/// [`crate::commitment`]); the key itself is revealed once the roster is frozen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// Protocol version.
    pub v: u32,
    /// Study id.
    pub study: String,
    /// Commitment to this patient's X25519 public key for the round.
    pub commitment: Commitment,
    /// Invite code, for studies that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
}

/// Reveals the key and nonce behind this patient's commitment, once the roster is frozen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reveal {
    /// Protocol version.
    pub v: u32,
    /// Round id.
    pub round: u64,
    /// This patient's X25519 public key for the round.
    pub public_key: PublicKey,
    /// The nonce of its commitment.
    pub nonce: Nonce,
}

/// All of a patient's sealed shares for the round, one per other member in ascending roster
/// order, in one binary frame ([`crate::frame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shares {
    /// Round id.
    pub round: u64,
    /// One sealed share per other roster member, tagged with the recipient's index.
    pub shares: ShareList,
    /// With validity proofs in an additive round: the sealed correction for the leader (one
    /// entry); otherwise empty.
    pub extra: ShareList,
}

/// A patient's verifier shares: for every dealer whose proof share it holds (and does not
/// check itself), one masked and tagged entry for that dealer's checker
/// ([`crate::proof::entry_bytes`], 32 bytes), tagged with the dealer's index (ascending). A
/// binary frame ([`crate::frame`], kind 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verify {
    /// Round id.
    pub round: u64,
    /// The entries, tagged with the dealer's index.
    pub checks: ShareList,
}

/// A checker's verdict on its dealer's proof, in clear for the relay, with one verdict tag
/// ([`crate::proof::verdict_tag`], 8 bytes) for every other keyed member (tagged with the
/// recipient's index, ascending). Patients trust a verdict only through its tags. A binary
/// frame (kind 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Round id.
    pub round: u64,
    /// The dealer whose proof was checked.
    pub dealer: u32,
    /// The verdict.
    pub verdict: crate::proof::Verdict,
    /// The verdict tags, tagged with the recipient's index.
    pub tags: ShareList,
}

/// A patient's partial sum: the sum of the shares it holds from the contributor set. A binary
/// frame ([`crate::frame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialSum {
    /// Round id.
    pub round: u64,
    /// The partial sum vector (field elements below 2^61 − 1).
    pub sum: Vec<Fe>,
}

/// Leave the study (before or during a round).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leave {
    /// Protocol version.
    pub v: u32,
}

/// Messages from a patient to the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PatientToRelay {
    /// See [`Join`].
    Join(Join),
    /// See [`Reveal`].
    Reveal(Reveal),
    /// See [`Shares`]. A binary frame.
    #[serde(skip)]
    Shares(Shares),
    /// See [`PartialSum`]. A binary frame.
    #[serde(skip)]
    PartialSum(PartialSum),
    /// See [`Verify`]. A binary frame.
    #[serde(skip)]
    Verify(Verify),
    /// See [`Verdict`]. A binary frame.
    #[serde(skip)]
    Verdict(Verdict),
    /// See [`Leave`].
    Leave(Leave),
}

/// Sent to a patient once its join is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    /// Protocol version.
    pub v: u32,
    /// The study's parameters.
    pub study: StudyParams,
    /// The round being enrolled.
    pub round: u64,
    /// Patients enrolled so far, including this one.
    pub enrolled: u32,
}

/// Enrolment progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// Protocol version.
    pub v: u32,
    /// The round being enrolled.
    pub round: u64,
    /// Patients enrolled so far.
    pub enrolled: u32,
    /// Cohort size that starts the round.
    pub size: u32,
}

/// The frozen roster, the same message for every member (so the relay encodes it once); each
/// patient finds its own index by its commitment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterMsg {
    /// Protocol version.
    pub v: u32,
    /// The roster.
    pub roster: Roster,
}

/// Every member's reveal, once all have revealed. Each patient checks each against the frozen
/// roster's commitment before it uses any key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// Protocol version.
    pub v: u32,
    /// Round id.
    pub round: u64,
    /// One reveal per roster member, in index order.
    pub reveals: Vec<Revealed>,
}

/// One patient's partial sum, as published with the result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialSumOf {
    /// Sender's roster index.
    pub from: u32,
    /// Its partial sum.
    pub sum: Vec<Fe>,
}

/// The contributor set and every share addressed to the recipient from it, in one binary
/// frame ([`crate::frame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Round id.
    pub round: u64,
    /// Roster indices whose shares were delivered, ascending.
    pub contributors: Vec<u32>,
    /// The shares addressed to the recipient from each other contributor, tagged with the
    /// sender's index.
    pub shares: ShareList,
    /// With validity proofs in an additive round: the sealed correction of the dealer whose
    /// leader the recipient is (at most one entry, tagged with the dealer); otherwise empty.
    pub extra: ShareList,
}

/// The verifier entries of one dealer's proof, delivered to its checker. Additive rounds: one
/// entry, the sum of every verifier's entry, tagged with the number of entries added. Shamir
/// rounds: every verifier's entry, tagged with the verifier's index (ascending). A binary
/// frame (kind 6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checks {
    /// Round id.
    pub round: u64,
    /// The dealer whose proof these entries check.
    pub dealer: u32,
    /// The entries.
    pub checks: ShareList,
}

/// The verdicts for one patient: every contributor whose proof was not found valid, tagged
/// with the dealer's index (ascending), with its verdict's byte (0xFF: no verdict arrived);
/// and the sum (mod 2^64) of every verdict tag addressed to the patient. A binary frame
/// (kind 8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdicts {
    /// Round id.
    pub round: u64,
    /// The sum of the verdict tags addressed to the recipient.
    pub tag: u64,
    /// The verdicts other than `valid`: one byte each, tagged with the dealer's index.
    pub listed: ShareList,
}

/// A completed round's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundResult {
    /// Protocol version.
    pub v: u32,
    /// Study id.
    pub study: String,
    /// Round id.
    pub round: u64,
    /// The revealed statistics of a one-question study (the single-question fields of
    /// [`crate::study::StudyParams`]); absent for a study with `questions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
    /// The revealed result of the questionnaire (for a one-question study: its one question
    /// `value`).
    pub questionnaire: QuestionnaireResult,
    /// Roster size.
    pub roster_size: u32,
    /// Roster indices whose values are in the statistics.
    pub contributors: Vec<u32>,
    /// Number of partial sums used.
    pub partial_sums: u32,
    /// Members left out because their validity proof failed or could not be checked
    /// (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<crate::proof::Exclusion>,
    /// The round's safety code.
    pub safety_code: SafetyCode,
    /// Every partial sum used, so that each patient recomputes (and checks) the result itself.
    /// On the wire these follow the JSON part of the binary `result` frame ([`crate::frame`]),
    /// not inside it.
    #[serde(skip)]
    pub partials: Vec<PartialSumOf>,
}

/// Why a round was abandoned. Nothing was revealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AbandonReason {
    /// Fewer patients sent shares than the minimum cohort.
    TooFewContributors {
        /// Contributors.
        got: u32,
        /// Needed.
        needed: u32,
    },
    /// Fewer partial sums than the threshold arrived.
    TooFewPartialSums {
        /// Received or still possible.
        got: u32,
        /// Threshold.
        needed: u32,
    },
    /// The aggregate was inconsistent (a corrupted partial sum).
    InconsistentAggregate,
    /// Validity proofs left members out where the round cannot do without them (an additive
    /// round needs every member) or left too few. Nothing was revealed.
    ProofsFailed {
        /// The members left out, with the reason.
        excluded: Vec<crate::proof::Exclusion>,
    },
    /// The relay is shutting down.
    Shutdown,
    /// The relay restarted while the round was in flight.
    RelayRestarted,
    /// Not every roster member revealed a key matching its commitment in time.
    MissingReveals {
        /// Valid reveals received.
        got: u32,
        /// Roster size.
        needed: u32,
    },
    /// The study's state machine failed inside the relay and was restarted.
    StudyRestarted,
}

impl AbandonReason {
    /// The machine-readable kind, as in the `kind` field on the wire, e.g.
    /// `"too_few_partial_sums"`.
    pub fn kind(&self) -> &'static str {
        match self {
            AbandonReason::TooFewContributors { .. } => "too_few_contributors",
            AbandonReason::TooFewPartialSums { .. } => "too_few_partial_sums",
            AbandonReason::InconsistentAggregate => "inconsistent_aggregate",
            AbandonReason::ProofsFailed { .. } => "proofs_failed",
            AbandonReason::Shutdown => "shutdown",
            AbandonReason::RelayRestarted => "relay_restarted",
            AbandonReason::MissingReveals { .. } => "missing_reveals",
            AbandonReason::StudyRestarted => "study_restarted",
        }
    }
}

impl core::fmt::Display for AbandonReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AbandonReason::TooFewContributors { got, needed } => write!(
                f,
                "only {got} patients sent their shares in time; at least {needed} are needed"
            ),
            AbandonReason::TooFewPartialSums { got, needed } => write!(
                f,
                "only {got} patients stayed to send partial sums; {needed} are needed"
            ),
            AbandonReason::InconsistentAggregate => {
                f.write_str("the partial sums did not add up to a consistent result")
            }
            AbandonReason::ProofsFailed { excluded } => {
                f.write_str("the validity proof of patient")?;
                if excluded.len() > 1 {
                    f.write_str("s")?;
                }
                for (i, e) in excluded.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(f, "{sep}#{} ({})", e.index, e.reason.as_str())?;
                }
                f.write_str(" did not hold, and the round cannot go on without them")
            }
            AbandonReason::Shutdown => f.write_str("the hospital's relay is shutting down"),
            AbandonReason::RelayRestarted => {
                f.write_str("the hospital's relay restarted during the round")
            }
            AbandonReason::StudyRestarted => {
                f.write_str("the study failed on the hospital's relay and was restarted")
            }
            AbandonReason::MissingReveals { got, needed } => write!(
                f,
                "only {got} of {needed} patients revealed their keys in time"
            ),
        }
    }
}

/// The round was abandoned; nothing was revealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Abandoned {
    /// Protocol version.
    pub v: u32,
    /// Round id.
    pub round: u64,
    /// Why.
    pub reason: AbandonReason,
    /// The reason in words.
    pub message: String,
}

/// The relay could not accept a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorMsg {
    /// Protocol version.
    pub v: u32,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation (never contains values, shares or keys).
    pub message: String,
}

impl ErrorMsg {
    /// The wire reply that refuses a message for this reason (its code and its text, which
    /// never holds a value, share or key).
    pub fn refusing(e: &ProtocolError) -> ErrorMsg {
        ErrorMsg {
            v: PROTOCOL_VERSION,
            code: e.code(),
            message: alloc::string::ToString::to_string(e),
        }
    }
}

/// Messages from the relay to a patient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum RelayToPatient {
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`Enrolment`].
    Enrolment(Enrolment),
    /// See [`RosterMsg`].
    Roster(RosterMsg),
    /// See [`Keys`].
    Keys(Keys),
    /// See [`Delivery`]. A binary frame.
    #[serde(skip)]
    Delivery(Delivery),
    /// See [`Checks`]. A binary frame.
    #[serde(skip)]
    Checks(Checks),
    /// See [`Verdicts`]. A binary frame.
    #[serde(skip)]
    Verdicts(Verdicts),
    /// See [`RoundResult`]. A binary frame.
    #[serde(skip)]
    Result(RoundResult),
    /// See [`Abandoned`].
    Abandoned(Abandoned),
    /// See [`ErrorMsg`].
    Error(ErrorMsg),
}

fn classify(e: &serde_json::Error) -> DecodeError {
    use serde_json::error::Category;
    let (line, column) = (e.line(), e.column());
    match e.classify() {
        Category::Eof => DecodeError::Truncated,
        Category::Syntax | Category::Io => DecodeError::Syntax { line, column },
        Category::Data => {
            // serde's messages start with a fixed phrase; only the phrase is looked at, and the
            // message itself (which may quote input) is dropped.
            let msg = alloc::string::ToString::to_string(e);
            if msg.starts_with("unknown variant") {
                DecodeError::UnknownType { line, column }
            } else if msg.starts_with("unknown field") {
                DecodeError::UnknownField { line, column }
            } else if msg.starts_with("missing field") {
                DecodeError::MissingField { line, column }
            } else {
                DecodeError::Schema { line, column }
            }
        }
    }
}

fn decode_json<'a, T: Deserialize<'a>>(text: &'a str, max: usize) -> Result<T, DecodeError> {
    if text.len() > max {
        return Err(DecodeError::TooLarge {
            len: text.len(),
            max,
        });
    }
    serde_json::from_str(text).map_err(|e| classify(&e))
}

/// One encoded message, as it goes into one WebSocket message.
#[derive(Clone, PartialEq, Eq)]
pub enum Wire {
    /// A control message: JSON in a text message.
    Text(String),
    /// A bulk message: a binary frame ([`crate::frame`]) in a binary message.
    Binary(Vec<u8>),
}

impl core::fmt::Debug for Wire {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Wire::Text(t) => write!(f, "Text({} bytes)", t.len()),
            Wire::Binary(b) => write!(f, "Binary({} bytes)", b.len()),
        }
    }
}

impl Wire {
    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Wire::Text(t) => Some(t),
            Wire::Binary(_) => None,
        }
    }

    /// The frame, if this is a binary message.
    pub fn as_binary(&self) -> Option<&[u8]> {
        match self {
            Wire::Binary(b) => Some(b),
            Wire::Text(_) => None,
        }
    }

    /// The bytes of the message (UTF-8 text or the binary frame).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Wire::Text(t) => t.as_bytes(),
            Wire::Binary(b) => b,
        }
    }
}

/// Checks a binary frame's size and version, then decodes it.
fn decode_frame(bytes: &[u8], max: usize) -> Result<Decoded, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    match frame::version(bytes) {
        Some(v) if u32::from(v) != PROTOCOL_VERSION => {
            Err(DecodeError::UnsupportedVersion { got: u32::from(v) })
        }
        _ => frame::decode(bytes).map_err(DecodeError::Frame),
    }
}

macro_rules! versioned {
    ($ty:ident { $($variant:ident),* } binary { $($bin:ident),* }) => {
        impl $ty {
            /// The protocol version the message carries (binary frames: the version this crate
            /// speaks, checked when decoding).
            pub fn version(&self) -> u32 {
                match self {
                    $( $ty::$variant(m) => m.v, )*
                    $( $ty::$bin(_) => PROTOCOL_VERSION, )*
                }
            }

            /// The message type as on the wire, for logs and errors.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( $ty::$variant(_) => stringify!($variant), )*
                    $( $ty::$bin(_) => stringify!($bin), )*
                }
            }

            /// Decodes one JSON text message of at most `max` bytes and checks its version.
            pub fn decode_with_limit(text: &str, max: usize) -> Result<Self, DecodeError> {
                let fast = if text.len() <= max { Self::decode_tag_first(text) } else { None };
                let msg: Self = match fast {
                    Some(m) => m,
                    None => decode_json(text, max)?,
                };
                match msg.version() {
                    PROTOCOL_VERSION => Ok(msg),
                    got => Err(DecodeError::UnsupportedVersion { got }),
                }
            }

            /// Decodes one JSON text message of at most [`MAX_MESSAGE_BYTES`].
            pub fn decode(text: &str) -> Result<Self, DecodeError> {
                Self::decode_with_limit(text, MAX_MESSAGE_BYTES)
            }

            /// Decodes one binary frame of at most [`MAX_MESSAGE_BYTES`].
            pub fn decode_binary(bytes: &[u8]) -> Result<Self, DecodeError> {
                Self::decode_binary_with_limit(bytes, MAX_MESSAGE_BYTES)
            }

            /// Decodes one message as received: a text or a binary WebSocket message.
            pub fn decode_wire(wire: &Wire) -> Result<Self, DecodeError> {
                match wire {
                    Wire::Text(t) => Self::decode(t),
                    Wire::Binary(b) => Self::decode_binary(b),
                }
            }

            /// Whether this message travels as a binary frame.
            pub fn is_binary(&self) -> bool {
                matches!(self, $( $ty::$bin(_) )|*)
            }
        }
    };
}

impl PatientToRelay {
    /// Decodes one binary frame of at most `max` bytes: `shares` or `partial_sum`.
    pub fn decode_binary_with_limit(bytes: &[u8], max: usize) -> Result<Self, DecodeError> {
        match decode_frame(bytes, max)? {
            Decoded::Shares {
                round,
                shares,
                extra,
            } => Ok(PatientToRelay::Shares(Shares {
                round,
                shares,
                extra,
            })),
            Decoded::PartialSum { round, sum } => {
                Ok(PatientToRelay::PartialSum(PartialSum { round, sum }))
            }
            Decoded::Proof {
                kind: FrameKind::Verify,
                round,
                dealer: 0,
                word: 0,
                items,
            } => Ok(PatientToRelay::Verify(Verify {
                round,
                checks: items,
            })),
            Decoded::Proof {
                kind: FrameKind::Verdict,
                round,
                dealer,
                word,
                items,
            } => {
                let verdict = u8::try_from(word)
                    .ok()
                    .and_then(crate::proof::Verdict::from_code)
                    .ok_or(DecodeError::Frame(FrameError::Reserved))?;
                Ok(PatientToRelay::Verdict(Verdict {
                    round,
                    dealer,
                    verdict,
                    tags: items,
                }))
            }
            Decoded::Proof {
                kind: FrameKind::Verify,
                ..
            } => Err(DecodeError::Frame(FrameError::Reserved)),
            _ => Err(DecodeError::Frame(FrameError::UnknownKind {
                kind: bytes[3],
            })),
        }
    }

    /// Encodes the message: JSON text for control messages, a binary frame for `shares` and
    /// `partial_sum`.
    pub fn encode(&self) -> Wire {
        match self {
            PatientToRelay::Shares(s) => {
                Wire::Binary(frame::encode_shares(s.round, &s.shares, &s.extra))
            }
            PatientToRelay::Verify(v) => Wire::Binary(frame::encode_proof(
                FrameKind::Verify,
                v.round,
                0,
                0,
                &v.checks,
            )),
            PatientToRelay::Verdict(v) => Wire::Binary(frame::encode_proof(
                FrameKind::Verdict,
                v.round,
                v.dealer,
                u32::from(v.verdict.code()),
                &v.tags,
            )),
            PatientToRelay::PartialSum(p) => {
                Wire::Binary(frame::encode_partial_sum(p.round, &p.sum))
            }
            m => Wire::Text(serde_json::to_string(m).expect("wire messages always serialize")),
        }
    }
}

impl RelayToPatient {
    /// Decodes one binary frame of at most `max` bytes: `delivery`.
    pub fn decode_binary_with_limit(bytes: &[u8], max: usize) -> Result<Self, DecodeError> {
        match decode_frame(bytes, max)? {
            Decoded::Delivery {
                round,
                contributors,
                shares,
                extra,
            } => Ok(RelayToPatient::Delivery(Delivery {
                round,
                contributors,
                shares,
                extra,
            })),
            Decoded::Proof {
                kind: FrameKind::Checks,
                round,
                dealer,
                word: 0,
                items,
            } => Ok(RelayToPatient::Checks(Checks {
                round,
                dealer,
                checks: items,
            })),
            Decoded::Proof {
                kind: FrameKind::Verdicts,
                round,
                dealer,
                word,
                items,
            } => Ok(RelayToPatient::Verdicts(Verdicts {
                round,
                tag: u64::from(dealer) | (u64::from(word) << 32),
                listed: items,
            })),
            Decoded::Proof {
                kind: FrameKind::Checks,
                ..
            } => Err(DecodeError::Frame(FrameError::Reserved)),
            Decoded::Result {
                round,
                json,
                partials,
            } => {
                let text = core::str::from_utf8(&json)
                    .map_err(|_| DecodeError::Syntax { line: 0, column: 0 })?;
                let mut result: RoundResult = decode_json(text, MAX_MESSAGE_BYTES)?;
                if result.v != PROTOCOL_VERSION {
                    return Err(DecodeError::UnsupportedVersion { got: result.v });
                }
                if result.round != round {
                    return Err(DecodeError::Frame(FrameError::RoundMismatch));
                }
                result.partials = partials
                    .into_iter()
                    .map(|(from, sum)| PartialSumOf { from, sum })
                    .collect();
                Ok(RelayToPatient::Result(result))
            }
            _ => Err(DecodeError::Frame(FrameError::UnknownKind {
                kind: bytes[3],
            })),
        }
    }

    /// Encodes the message: JSON text for control messages, a binary frame for `delivery`.
    pub fn encode(&self) -> Wire {
        match self {
            RelayToPatient::Delivery(d) => Wire::Binary(frame::encode_delivery(
                d.round,
                &d.contributors,
                &d.shares,
                &d.extra,
            )),
            RelayToPatient::Checks(c) => Wire::Binary(frame::encode_proof(
                FrameKind::Checks,
                c.round,
                c.dealer,
                0,
                &c.checks,
            )),
            // The tag travels in the two header words: low half, high half.
            RelayToPatient::Verdicts(v) => Wire::Binary(frame::encode_proof(
                FrameKind::Verdicts,
                v.round,
                v.tag as u32,
                (v.tag >> 32) as u32,
                &v.listed,
            )),
            RelayToPatient::Result(r) => {
                let json = serde_json::to_vec(r).expect("wire messages always serialize");
                let len = r.partials.first().map_or(0, |p| p.sum.len());
                let partials: Vec<(u32, &[Fe])> = r
                    .partials
                    .iter()
                    .map(|p| (p.from, p.sum.as_slice()))
                    .collect();
                Wire::Binary(frame::encode_result(r.round, &json, len, &partials))
            }
            m => Wire::Text(serde_json::to_string(m).expect("wire messages always serialize")),
        }
    }
}

/// Splits `{"type":"<tag>",<rest>` into the tag and `{<rest>`, the variant's own object.
fn split_tag(text: &str) -> Option<(&str, String)> {
    let rest = text.strip_prefix(r#"{"type":""#)?;
    let (tag, after) = rest.split_at(rest.find('"')?);
    if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return None;
    }
    let after = after.strip_prefix("\",")?;
    let mut body = String::with_capacity(after.len() + 1);
    body.push('{');
    body.push_str(after);
    Some((tag, body))
}

impl PatientToRelay {
    /// The fast path of decoding: our encoders write `"type"` first, and then the variant's
    /// struct is decoded directly instead of through serde's buffered internally-tagged path.
    /// `None` for anything else, which then takes the general path (and gets its errors).
    fn decode_tag_first(text: &str) -> Option<PatientToRelay> {
        let (tag, body) = split_tag(text)?;
        Some(match tag {
            "join" => PatientToRelay::Join(serde_json::from_str(&body).ok()?),
            "reveal" => PatientToRelay::Reveal(serde_json::from_str(&body).ok()?),
            "leave" => PatientToRelay::Leave(serde_json::from_str(&body).ok()?),
            _ => return None,
        })
    }
}

impl RelayToPatient {
    /// See [`PatientToRelay::decode_tag_first`].
    fn decode_tag_first(text: &str) -> Option<RelayToPatient> {
        let (tag, body) = split_tag(text)?;
        Some(match tag {
            "welcome" => RelayToPatient::Welcome(serde_json::from_str(&body).ok()?),
            "enrolment" => RelayToPatient::Enrolment(serde_json::from_str(&body).ok()?),
            "roster" => RelayToPatient::Roster(serde_json::from_str(&body).ok()?),
            "keys" => RelayToPatient::Keys(serde_json::from_str(&body).ok()?),
            "abandoned" => RelayToPatient::Abandoned(serde_json::from_str(&body).ok()?),
            "error" => RelayToPatient::Error(serde_json::from_str(&body).ok()?),
            _ => return None,
        })
    }
}

versioned!(PatientToRelay { Join, Reveal, Leave } binary { Shares, PartialSum, Verify, Verdict });
versioned!(RelayToPatient { Welcome, Enrolment, Roster, Keys, Abandoned, Error } binary { Delivery, Checks, Verdicts, Result });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_agree_with_the_wire() {
        use crate::error::ErrorCode;
        use crate::protocol::RoundPhase;
        let reasons = [
            AbandonReason::TooFewContributors { got: 1, needed: 3 },
            AbandonReason::TooFewPartialSums { got: 1, needed: 2 },
            AbandonReason::InconsistentAggregate,
            AbandonReason::Shutdown,
            AbandonReason::RelayRestarted,
            AbandonReason::StudyRestarted,
        ];
        for r in reasons {
            let v = serde_json::to_value(&r).unwrap();
            assert_eq!(v["kind"], r.kind());
        }
        let codes = [
            ErrorCode::BadMessage,
            ErrorCode::Unexpected,
            ErrorCode::UnknownStudy,
            ErrorCode::Forbidden,
            ErrorCode::Duplicate,
            ErrorCode::Invalid,
            ErrorCode::TooFew,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
        ];
        for c in codes {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for p in [RoundPhase::AwaitingShares, RoundPhase::AwaitingPartialSums] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }
    use alloc::vec;

    #[test]
    fn join_round_trips_and_is_strict() {
        let m = PatientToRelay::Join(Join {
            v: PROTOCOL_VERSION,
            study: "demo".into(),
            commitment: Commitment([7; 32]),
            invite: None,
        });
        let Wire::Text(text) = m.encode() else {
            panic!("join is a text message")
        };
        assert!(
            text.starts_with(r#"{"type":"join","v":3,"study":"demo","commitment":""#),
            "{text}"
        );
        assert_eq!(PatientToRelay::decode(&text).unwrap(), m);
        let extra = text.replacen("\"v\":3", "\"v\":3,\"x\":2", 1);
        assert!(matches!(
            PatientToRelay::decode(&extra),
            Err(DecodeError::UnknownField { .. })
        ));
        // An old (version 1) client is told which version this side speaks.
        let v1 = text.replacen("\"v\":3", "\"v\":1", 1);
        let err = PatientToRelay::decode(&v1).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedVersion { got: 1 });
        assert_eq!(
            alloc::string::ToString::to_string(&err),
            "unsupported protocol version 1 (this side speaks 3)"
        );
    }

    #[test]
    fn refuses_bad_input_with_typed_errors() {
        type Check = fn(&DecodeError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, DecodeError::Truncated)),
            ("{", |e| matches!(e, DecodeError::Truncated)),
            ("nope", |e| matches!(e, DecodeError::Syntax { .. })),
            ("[1,2]", |e| matches!(e, DecodeError::Schema { .. })),
            ("42", |e| matches!(e, DecodeError::Schema { .. })),
            (r#"{"type":"hello","v":1}"#, |e| {
                matches!(e, DecodeError::UnknownType { .. })
            }),
            (r#"{"type":"leave"}"#, |e| {
                matches!(e, DecodeError::MissingField { .. })
            }),
            // Bulk messages are binary frames only.
            (r#"{"type":"partial_sum","v":3,"round":1,"sum":[1]}"#, |e| {
                matches!(e, DecodeError::UnknownType { .. })
            }),
            (
                r#"{"type":"join","v":3,"study":"d","commitment":"AAAA"}"#,
                |e| matches!(e, DecodeError::Schema { .. }),
            ),
            (r#"{"type":"shares","v":3,"round":1,"shares":[]}"#, |e| {
                matches!(e, DecodeError::UnknownType { .. })
            }),
            (r#"{"type":"leave","v":1e400}"#, |e| {
                matches!(e, DecodeError::Syntax { .. } | DecodeError::Schema { .. })
            }),
        ];
        for (text, ok) in cases {
            let err = PatientToRelay::decode(text).expect_err(text);
            assert!(ok(&err), "{text}: {err:?}");
        }
        let deep = "[".repeat(10_000);
        assert!(PatientToRelay::decode(&deep).is_err());
        let big = "x".repeat(100);
        assert_eq!(
            PatientToRelay::decode_with_limit(&big, 99),
            Err(DecodeError::TooLarge { len: 100, max: 99 })
        );
    }

    #[test]
    fn errors_never_quote_input() {
        let secret = "172.5";
        let text = format!(r#"{{"type":"join","v":3,"study":"{secret}","commitment":"{secret}"}}"#);
        let err = PatientToRelay::decode(&text).unwrap_err();
        assert!(!alloc::string::ToString::to_string(&err).contains(secret));
        assert!(!format!("{err:?}").contains(secret));
    }

    #[test]
    fn tag_first_fast_path_agrees_with_the_general_decoder() {
        let to_relay = [
            PatientToRelay::Join(Join {
                v: PROTOCOL_VERSION,
                study: "demo".into(),
                commitment: Commitment([7; 32]),
                invite: Some("x".into()),
            }),
            PatientToRelay::Leave(Leave {
                v: PROTOCOL_VERSION,
            }),
        ];
        for m in &to_relay {
            let Wire::Text(text) = m.encode() else {
                panic!("control messages are text")
            };
            assert_eq!(PatientToRelay::decode_tag_first(&text).as_ref(), Some(m));
            assert_eq!(
                decode_json::<PatientToRelay>(&text, usize::MAX).as_ref(),
                Ok(m)
            );
            // `type` elsewhere than first: not the fast path, same message.
            let (head, rest) = text.split_once(',').unwrap();
            let moved = format!("{{{},{}}}", &rest[..rest.len() - 1], &head[1..]);
            assert_eq!(PatientToRelay::decode_tag_first(&moved), None, "{moved}");
            assert_eq!(PatientToRelay::decode(&moved).as_ref(), Ok(m), "{moved}");
        }
        // Whatever the fast path refuses goes to the general decoder, errors included.
        for bad in [
            r#"{"type":"leave"}"#,
            r#"{"type":"leave","v":3,"type":"leave"}"#,
            r#"{"type":"shares","v":3,"round":1,"shares":[]}"#,
            r#"{"type":"Leave","v":3}"#,
            r#"{"type":"","v":3}"#,
            r#"{"type":"leave","v":3} x"#,
        ] {
            assert_eq!(PatientToRelay::decode_tag_first(bad), None, "{bad}");
            assert_eq!(
                PatientToRelay::decode(bad),
                decode_json::<PatientToRelay>(bad, MAX_MESSAGE_BYTES).map(|_| unreachable!()),
                "{bad}"
            );
        }
    }

    #[test]
    fn bulk_messages_are_binary_and_round_trip() {
        let mut shares = ShareList::with_capacity(48, 2);
        assert!(shares.push(2, &[7; 48]));
        assert!(shares.push(3, &[8; 48]));
        let up = [
            PatientToRelay::Shares(Shares {
                round: 3,
                shares: shares.clone(),
                extra: ShareList::with_capacity(0, 0),
            }),
            PatientToRelay::Shares(Shares {
                round: 3,
                shares: shares.clone(),
                extra: shares.clone(),
            }),
            PatientToRelay::PartialSum(PartialSum {
                round: 3,
                sum: vec![Fe::new(5); 13],
            }),
            PatientToRelay::Verify(Verify {
                round: 3,
                checks: shares.clone(),
            }),
            PatientToRelay::Verdict(Verdict {
                round: 3,
                dealer: 2,
                verdict: crate::proof::Verdict::InvalidProof,
                tags: shares.clone(),
            }),
        ];
        for m in &up {
            assert!(m.is_binary());
            let Wire::Binary(b) = m.encode() else {
                panic!("bulk messages are binary")
            };
            assert_eq!(PatientToRelay::decode_binary(&b).as_ref(), Ok(m));
            // A patient's frame is not a relay's, and the other way round.
            assert!(matches!(
                RelayToPatient::decode_binary(&b),
                Err(DecodeError::Frame(FrameError::UnknownKind { .. }))
            ));
        }
        let down = [
            RelayToPatient::Delivery(Delivery {
                round: 3,
                contributors: vec![1, 2, 3],
                shares: shares.clone(),
                extra: ShareList::with_capacity(0, 0),
            }),
            RelayToPatient::Delivery(Delivery {
                round: 3,
                contributors: vec![1, 2, 3],
                shares: shares.clone(),
                extra: shares.clone(),
            }),
            RelayToPatient::Checks(Checks {
                round: 3,
                dealer: 1,
                checks: shares.clone(),
            }),
            RelayToPatient::Verdicts(Verdicts {
                round: 3,
                tag: 0x0123_4567_89ab_cdef,
                listed: shares,
            }),
        ];
        for d in &down {
            let Wire::Binary(b) = d.encode() else {
                panic!("bulk messages are binary")
            };
            assert_eq!(RelayToPatient::decode_binary(&b).as_ref(), Ok(d));
        }
        let Wire::Binary(b) = down[0].encode() else {
            panic!("delivery is binary")
        };
        assert!(matches!(
            PatientToRelay::decode_binary(&b),
            Err(DecodeError::Frame(FrameError::UnknownKind { kind: 2 }))
        ));
        // A frame of another version gets the version error, not a shape error.
        let mut old = b.clone();
        old[2] = 1;
        assert_eq!(
            RelayToPatient::decode_binary(&old),
            Err(DecodeError::UnsupportedVersion { got: 1 })
        );
        assert_eq!(
            RelayToPatient::decode_binary_with_limit(&b, 10),
            Err(DecodeError::TooLarge {
                len: b.len(),
                max: 10
            })
        );
        assert_eq!(
            format!("{:?}", Wire::Binary(b.clone())),
            format!("Binary({} bytes)", b.len())
        );
    }
}
