//! Wire messages: JSON text frames, one message per frame, each an object with a `type` and a
//! protocol version `v`. Types are named by direction. Decoding is strict: unknown types or
//! fields, wrong lengths, out-of-range numbers and oversize input are typed errors.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Deserializer, Serialize};

use crate::commitment::{Commitment, Nonce, Revealed};
use crate::encoding::Statistics;
use crate::envelope::{PublicKey, TAG_LEN};
use crate::error::{DecodeError, ErrorCode};
use crate::field::Fe;
use crate::roster::{Roster, SafetyCode};
use crate::study::StudyParams;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest message either side accepts by default, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// A sealed share in transit, as base64url text. The relay routes it without decoding it;
/// only the recipient opens it. `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl core::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Sealed({} chars)", self.0.len())
    }
}

impl Sealed {
    /// Wraps sealed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Sealed {
        Sealed(crate::b64::encode(bytes))
    }

    /// The sealed bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, &'static str> {
        crate::b64::decode(&self.0)
    }

    /// Whether this is the base64url length of a sealed payload of `plain_len` bytes.
    pub fn has_len_for(&self, plain_len: usize) -> bool {
        let bytes = plain_len + TAG_LEN;
        self.0.len() == (bytes * 4).div_ceil(3)
    }
}

/// Which bytes may appear in base64url text (a table: this check runs on every byte of every
/// share the relay routes).
static BASE64URL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    t
};

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sealed, D::Error> {
        let s = String::deserialize(d)?;
        if s.bytes().all(|b| BASE64URL[usize::from(b)]) {
            Ok(Sealed(s))
        } else {
            Err(serde::de::Error::custom("sealed share must be base64url"))
        }
    }
}

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

/// One sealed share addressed to a roster member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareTo {
    /// Recipient's roster index.
    pub to: u32,
    /// The sealed share.
    pub sealed: Sealed,
}

/// All of a patient's sealed shares for the round, one per other member, in one frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shares {
    /// Protocol version.
    pub v: u32,
    /// Round id.
    pub round: u64,
    /// One sealed share per other roster member.
    pub shares: Vec<ShareTo>,
}

/// A patient's partial sum: the sum of the shares it holds from the contributor set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialSum {
    /// Protocol version.
    pub v: u32,
    /// Round id.
    pub round: u64,
    /// The partial sum vector (field elements as integers below 2^61 − 1).
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
    /// See [`Shares`].
    Shares(Shares),
    /// See [`PartialSum`].
    PartialSum(PartialSum),
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

/// The frozen roster, sent to every member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterMsg {
    /// Protocol version.
    pub v: u32,
    /// The roster.
    pub roster: Roster,
    /// The recipient's own roster index.
    pub you: u32,
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

/// One sealed share delivered to its recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareFrom {
    /// Sender's roster index.
    pub from: u32,
    /// The sealed share.
    pub sealed: Sealed,
}

/// The contributor set and every share addressed to the recipient from it, in one frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Protocol version.
    pub v: u32,
    /// Round id.
    pub round: u64,
    /// Roster indices whose shares were delivered, ascending.
    pub contributors: Vec<u32>,
    /// The shares addressed to the recipient from each other contributor.
    pub shares: Vec<ShareFrom>,
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
    /// The revealed statistics.
    pub statistics: Statistics,
    /// Roster size.
    pub roster_size: u32,
    /// Roster indices whose values are in the statistics.
    pub contributors: Vec<u32>,
    /// Number of partial sums used.
    pub partial_sums: u32,
    /// The round's safety code.
    pub safety_code: SafetyCode,
    /// Every partial sum used, so that each patient recomputes (and checks) the result itself.
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
            AbandonReason::Shutdown => f.write_str("the hospital's relay is shutting down"),
            AbandonReason::RelayRestarted => {
                f.write_str("the hospital's relay restarted during the round")
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
    /// See [`Delivery`].
    Delivery(Delivery),
    /// See [`RoundResult`].
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

macro_rules! versioned {
    ($ty:ident { $($variant:ident),* }) => {
        impl $ty {
            /// The protocol version the message carries.
            pub fn version(&self) -> u32 {
                match self { $( $ty::$variant(m) => m.v, )* }
            }

            /// The message type as on the wire, for logs and errors.
            pub fn kind(&self) -> &'static str {
                match self { $( $ty::$variant(_) => stringify!($variant), )* }
            }

            /// Decodes one message of at most `max` bytes and checks its version.
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

            /// Decodes one message of at most [`MAX_MESSAGE_BYTES`].
            pub fn decode(text: &str) -> Result<Self, DecodeError> {
                Self::decode_with_limit(text, MAX_MESSAGE_BYTES)
            }

            /// Encodes as JSON text.
            pub fn encode(&self) -> String {
                serde_json::to_string(self).expect("wire messages always serialize")
            }
        }
    };
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
            "shares" => PatientToRelay::Shares(serde_json::from_str(&body).ok()?),
            "partial_sum" => PatientToRelay::PartialSum(serde_json::from_str(&body).ok()?),
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
            "delivery" => RelayToPatient::Delivery(serde_json::from_str(&body).ok()?),
            "result" => RelayToPatient::Result(serde_json::from_str(&body).ok()?),
            "abandoned" => RelayToPatient::Abandoned(serde_json::from_str(&body).ok()?),
            "error" => RelayToPatient::Error(serde_json::from_str(&body).ok()?),
            _ => return None,
        })
    }
}

versioned!(PatientToRelay {
    Join,
    Reveal,
    Shares,
    PartialSum,
    Leave
});
versioned!(RelayToPatient {
    Welcome,
    Enrolment,
    Roster,
    Keys,
    Delivery,
    Result,
    Abandoned,
    Error
});

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn join_round_trips_and_is_strict() {
        let m = PatientToRelay::Join(Join {
            v: 2,
            study: "demo".into(),
            commitment: Commitment([7; 32]),
            invite: None,
        });
        let text = m.encode();
        assert!(
            text.starts_with(r#"{"type":"join","v":2,"study":"demo","commitment":""#),
            "{text}"
        );
        assert_eq!(PatientToRelay::decode(&text).unwrap(), m);
        let extra = text.replacen("\"v\":2", "\"v\":2,\"x\":2", 1);
        assert!(matches!(
            PatientToRelay::decode(&extra),
            Err(DecodeError::UnknownField { .. })
        ));
        let v1 = text.replacen("\"v\":2", "\"v\":1", 1);
        assert_eq!(
            PatientToRelay::decode(&v1),
            Err(DecodeError::UnsupportedVersion { got: 1 })
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
            (
                r#"{"type":"partial_sum","v":1,"round":1,"sum":[2305843009213693951]}"#,
                |e| matches!(e, DecodeError::Schema { .. }),
            ),
            (r#"{"type":"partial_sum","v":1,"round":-1,"sum":[]}"#, |e| {
                matches!(e, DecodeError::Schema { .. })
            }),
            (
                r#"{"type":"join","v":2,"study":"d","commitment":"AAAA"}"#,
                |e| matches!(e, DecodeError::Schema { .. }),
            ),
            (
                r#"{"type":"shares","v":1,"round":1,"shares":[{"to":2,"sealed":"a+b/"}]}"#,
                |e| matches!(e, DecodeError::Schema { .. }),
            ),
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
        let text = format!(r#"{{"type":"join","v":2,"study":"{secret}","commitment":"{secret}"}}"#);
        let err = PatientToRelay::decode(&text).unwrap_err();
        assert!(!alloc::string::ToString::to_string(&err).contains(secret));
        assert!(!format!("{err:?}").contains(secret));
    }

    #[test]
    fn tag_first_fast_path_agrees_with_the_general_decoder() {
        let sealed = Sealed::from_bytes(&[7u8; 48]);
        let to_relay = [
            PatientToRelay::Join(Join {
                v: 2,
                study: "demo".into(),
                commitment: Commitment([7; 32]),
                invite: Some("x".into()),
            }),
            PatientToRelay::Shares(Shares {
                v: 2,
                round: 3,
                shares: vec![ShareTo {
                    to: 2,
                    sealed: sealed.clone(),
                }],
            }),
            PatientToRelay::PartialSum(PartialSum {
                v: 2,
                round: 3,
                sum: vec![Fe::new(5); 13],
            }),
            PatientToRelay::Leave(Leave { v: 2 }),
        ];
        for m in &to_relay {
            let text = m.encode();
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
        let d = RelayToPatient::Delivery(Delivery {
            v: 2,
            round: 3,
            contributors: vec![1, 2],
            shares: vec![ShareFrom { from: 2, sealed }],
        });
        assert_eq!(
            RelayToPatient::decode_tag_first(&d.encode()),
            Some(d.clone())
        );
        // Whatever the fast path refuses goes to the general decoder, errors included.
        for bad in [
            r#"{"type":"leave"}"#,
            r#"{"type":"leave","v":1,"type":"leave"}"#,
            r#"{"type":"shares","v":1,"round":1,"shares":[{"to":2,"sealed":"a+b/"}]}"#,
            r#"{"type":"Leave","v":1}"#,
            r#"{"type":"","v":1}"#,
            r#"{"type":"leave","v":1} x"#,
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
    fn sealed_length_check() {
        let s = Sealed::from_bytes(&[0u8; 13 * 8 + TAG_LEN]);
        assert!(s.has_len_for(13 * 8));
        assert!(!s.has_len_for(12 * 8));
        assert_eq!(format!("{s:?}"), "Sealed(160 chars)");
        let d = RelayToPatient::Delivery(Delivery {
            v: 2,
            round: 3,
            contributors: vec![1, 2],
            shares: vec![ShareFrom { from: 2, sealed: s }],
        });
        assert_eq!(RelayToPatient::decode(&d.encode()).unwrap(), d);
    }
}
