//! Every error cohort-core can return, one enum per boundary.
//!
//! No variant carries a value, a share, a key or raw input: errors are logged and shown to
//! people, so they name what went wrong and where, never the secret involved.

use thiserror::Error;

/// A study's parameters are unacceptable.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StudyError {
    /// The id is empty, longer than 64 bytes, or has characters other than `a-z 0-9 - _`.
    #[error("study id must be 1-64 characters of a-z, 0-9, '-' and '_'")]
    BadId,
    /// The question or unit is too long or has control characters.
    #[error("question and unit must be at most 200 bytes without control characters")]
    BadText,
    /// `min` is not below `max`, or one of them has more decimals than the study.
    #[error("min must be below max and both must fit the study's decimals")]
    BadRange,
    /// Too many fractional digits.
    #[error("a study may ask for at most {max} decimals")]
    TooManyDecimals {
        /// The limit.
        max: u8,
    },
    /// Bucket count out of range.
    #[error("buckets must be between 1 and {max}")]
    BadBuckets {
        /// The limit.
        max: u16,
    },
    /// Cohort size out of range.
    #[error("cohort size must be between 2 and {max}")]
    BadSize {
        /// The limit.
        max: u32,
    },
    /// Threshold not in `2..=size`.
    #[error("threshold must be between 2 and the cohort size")]
    BadThreshold,
    /// The threshold breaks the collusion rule 2t > size + c, or c ≥ t.
    #[error(
        "threshold t must satisfy 2t > size + colluders and colluders < t: a lower t tolerates more dropouts (size - t) but would let the relay with the declared colluders reconstruct over two contributor sets and subtract them; each colluder allowed needs t one higher"
    )]
    BreaksCollusionRule,
    /// Minimum cohort not in `2..=size`.
    #[error("minimum cohort must be between 2 and the cohort size")]
    BadMinCohort,
    /// `size × range²` could wrap the field.
    #[error(
        "cohort size times the squared range could overflow the field; narrow the range, fewer decimals or a smaller cohort"
    )]
    WouldOverflow,
    /// `size × vector length` would make share frames too large.
    #[error(
        "cohort size times the vector length (buckets + 3 for one number) is too large for one round"
    )]
    TooLarge,
    /// The invite code is empty, too long or has control characters.
    #[error("invite code must be 1-128 bytes without control characters")]
    BadInvite,
    /// A `--study` spec item is not `key=value` or a number does not parse.
    #[error(
        "study spec must be comma-separated key=value pairs with numeric values where expected"
    )]
    BadSpec,
    /// A `--study` spec has an unknown key.
    #[error("unknown key in study spec")]
    UnknownKey,
    /// The questionnaire is unacceptable (names the question and the key).
    #[error("{0}")]
    Questionnaire(#[from] QuestionnaireError),
    /// The JSON form of a study is not a JSON object.
    #[error("study JSON must be one object (line {line}, column {column})")]
    NotAnObject {
        /// Line of the problem (1-based).
        line: usize,
        /// Column of the problem (1-based).
        column: usize,
    },
    /// The JSON form of a study has a key it does not know.
    #[error("unknown key `{key}` in study JSON")]
    UnknownField {
        /// The key.
        key: alloc::string::String,
    },
    /// The JSON form of a study gives a key twice.
    #[error("key `{key}` is given twice in study JSON")]
    DuplicateField {
        /// The key.
        key: alloc::string::String,
    },
    /// A key of the JSON form of a study has a value of the wrong type or out of range.
    #[error("`{key}` in study JSON: {reason}")]
    BadField {
        /// The key.
        key: &'static str,
        /// What is wrong (the parser's message; study parameters are public).
        reason: alloc::string::String,
    },
    /// The JSON form of a study mixes `questions` with single-question keys.
    #[error("`{key}` is a single-question key: with `questions`, give it per question")]
    MixedForms {
        /// The single-question key.
        key: &'static str,
    },
}

impl StudyError {
    /// The study key the error is about (as named in the JSON and `--study` forms), if one:
    /// `threshold` for a bad threshold, `questions` for a bad questionnaire, the key itself for
    /// an unknown, repeated or mistyped key. `None` for JSON that is not one object and for a
    /// `--study` item that is not `key=value`.
    pub fn key(&self) -> Option<&str> {
        Some(match self {
            StudyError::BadId => "id",
            StudyError::BadText => "question",
            StudyError::BadRange => "min",
            StudyError::TooManyDecimals { .. } => "decimals",
            StudyError::BadBuckets { .. } => "buckets",
            StudyError::BadSize { .. } | StudyError::WouldOverflow | StudyError::TooLarge => "size",
            StudyError::BadThreshold | StudyError::BreaksCollusionRule => "threshold",
            StudyError::BadMinCohort => "min_cohort",
            StudyError::BadInvite => "invite",
            StudyError::Questionnaire(_) => "questions",
            StudyError::UnknownField { key } | StudyError::DuplicateField { key } => key,
            StudyError::BadField { key, .. } | StudyError::MixedForms { key } => key,
            StudyError::NotAnObject { .. } | StudyError::BadSpec | StudyError::UnknownKey => {
                return None;
            }
        })
    }
}

/// A patient's value is unacceptable for a study. Never names the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Not a decimal number.
    #[error("not a number: use digits with an optional '-' and '.'")]
    Malformed,
    /// Too many digits to handle.
    #[error("number has too many digits")]
    TooLarge,
    /// More fractional digits than the study allows.
    #[error("too many digits after the decimal point (at most {allowed})")]
    TooManyDecimals {
        /// Digits allowed.
        allowed: u8,
    },
    /// Outside the study's `[min, max]`.
    #[error("outside the study's allowed range")]
    OutOfRange,
}

/// Splitting or reconstruction failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SharingError {
    /// Needs `2 ≤ t ≤ n`.
    #[error("sharing needs 2 <= t <= n")]
    BadParameters,
    /// Fewer shares than the threshold.
    #[error("too few shares to reconstruct")]
    TooFewShares,
    /// A share index is 0 or above n.
    #[error("share index out of range")]
    BadIndex,
    /// Two shares with one index.
    #[error("two shares with the same index")]
    DuplicateIndex,
    /// Shares of different lengths.
    #[error("shares have different lengths")]
    LengthMismatch,
}

/// Sealing or opening a share failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SealError {
    /// The peer's public key is a low-order point.
    #[error("peer public key is weak (low order)")]
    WeakKey,
    /// The sealed share has the wrong length for the study.
    #[error("sealed share has the wrong length")]
    BadLength,
    /// Authentication failed: modified, wrong key, or wrong study/round/direction.
    #[error("sealed share failed authentication")]
    OpenFailed,
}

/// An aggregate does not decode to consistent statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// Wrong number of components.
    #[error("aggregate has the wrong length")]
    WrongLength,
    /// Counts, sums and histogram disagree (a corrupted or mismatched partial sum).
    #[error("aggregate is inconsistent")]
    Inconsistent,
}

/// A wire message could not be decoded. Positions are given; input fragments never are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than the limit.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON.
    #[error("not valid JSON (line {line}, column {column})")]
    Syntax {
        /// 1-based line (0 when the decoder cannot tell).
        line: usize,
        /// 1-based column (0 when the decoder cannot tell).
        column: usize,
    },
    /// JSON ended early.
    #[error("JSON ended early")]
    Truncated,
    /// The `type` is not a message this side accepts.
    #[error("unknown message type (line {line}, column {column})")]
    UnknownType {
        /// 1-based line (0 when the decoder cannot tell).
        line: usize,
        /// 1-based column (0 when the decoder cannot tell).
        column: usize,
    },
    /// A field this message does not have.
    #[error("unknown field (line {line}, column {column})")]
    UnknownField {
        /// 1-based line (0 when the decoder cannot tell).
        line: usize,
        /// 1-based column (0 when the decoder cannot tell).
        column: usize,
    },
    /// A required field is missing.
    #[error("missing field (line {line}, column {column})")]
    MissingField {
        /// 1-based line (0 when the decoder cannot tell).
        line: usize,
        /// 1-based column (0 when the decoder cannot tell).
        column: usize,
    },
    /// Valid JSON of the wrong shape: wrong types, lengths, out-of-range numbers, not an object.
    #[error("message does not match the schema (line {line}, column {column})")]
    Schema {
        /// 1-based line (0 when the decoder cannot tell).
        line: usize,
        /// 1-based column (0 when the decoder cannot tell).
        column: usize,
    },
    /// A binary frame that is malformed (see [`crate::frame`]).
    #[error("{0}")]
    Frame(crate::frame::FrameError),
    /// A protocol version other than this one.
    #[error(
        "unsupported protocol version {got} (this side speaks {})",
        crate::message::PROTOCOL_VERSION
    )]
    UnsupportedVersion {
        /// The version sent.
        got: u32,
    },
}

/// A message arrived that the state machine cannot accept. The connection's driver reports it
/// to the sender (see [`ProtocolError::code`]) and logs it once.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The message is not expected in the current state.
    #[error("{got} is not expected while {state}")]
    WrongState {
        /// What the machine waits for.
        state: &'static str,
        /// The message type received.
        got: &'static str,
    },
    /// The message names a round other than the current one.
    #[error("message is for round {got}, the current round is {current}")]
    WrongRound {
        /// Round named.
        got: u64,
        /// Current round.
        current: u64,
    },
    /// The message names a study other than this one.
    #[error("message is for another study")]
    WrongStudy,
    /// The study does not exist.
    #[error("no such study")]
    UnknownStudy,
    /// The invite code is missing or wrong.
    #[error("this study needs a valid invite code")]
    BadInvite,
    /// The connection already joined (this or another study).
    #[error("already joined")]
    AlreadyJoined,
    /// The study's enrolment is full until the running round ends.
    #[error("the study is full; try again when the current round ends")]
    StudyFull,
    /// No message arrived from the relay within the patient's timeout.
    #[error("timed out waiting for the relay")]
    TimedOut,
    /// Two patients presented the same public key.
    #[error("public key already in use in this round")]
    DuplicateKey,
    /// The public key is a low-order point.
    #[error("public key is weak (low order)")]
    WeakKey,
    /// The sender is not in the current round's roster.
    #[error("not a member of the current round")]
    NotInRoster,
    /// This member's key was not revealed (validly) before the reveal deadline; the round
    /// goes on without it.
    #[error("no valid key reveal arrived in time; round {round} goes on without this patient")]
    RevealTooLate {
        /// Round id.
        round: u64,
    },
    /// Shares already received from this patient in this round.
    #[error("shares already received from this patient")]
    DuplicateShares,
    /// The share set does not have exactly one well-formed share per other roster member.
    #[error("shares must contain exactly one share of the right length for each other member")]
    BadShares,
    /// Partial sum already received from this patient in this round.
    #[error("partial sum already received from this patient")]
    DuplicatePartialSum,
    /// The partial sum has the wrong length.
    #[error("partial sum has the wrong length")]
    BadPartialSum,
    /// A round cannot start: fewer patients than needed.
    #[error("{enrolled} enrolled, at least {needed} needed to start")]
    NotEnoughPatients {
        /// Enrolled now.
        enrolled: u32,
        /// Needed.
        needed: u32,
    },
    /// Roster or contributor set below the study's minimum cohort (small-cell suppression).
    #[error("{got} patients is below the study's minimum cohort of {min}")]
    BelowMinimumCohort {
        /// Size offered.
        got: u32,
        /// The minimum.
        min: u32,
    },
    /// The roster's study parameters differ from those the patient joined.
    #[error("roster parameters differ from the study this patient joined")]
    ParamsMismatch,
    /// The roster is malformed (indices, threshold, duplicate keys, or this patient missing).
    #[error("roster is malformed")]
    BadRoster,
    /// ATTACK: the roster's threshold breaks 2t > n + c, so the relay could reconstruct over
    /// two contributor sets and subtract them.
    #[error("roster threshold {threshold} of {n} breaks 2t > n + c with c = {colluders}")]
    ThresholdBreaksCollusionRule {
        /// Roster size.
        n: u32,
        /// Threshold.
        threshold: u32,
        /// Declared colluders.
        colluders: u32,
    },
    /// ATTACK: two roster entries carry the same commitment or the same revealed key.
    #[error("the roster lists one member twice")]
    DuplicateRosterMember,
    /// ATTACK: a round id this patient has already taken part in (replay).
    #[error("round {round} was already run with this patient: replayed round id")]
    ReplayedRound {
        /// The replayed round id.
        round: u64,
    },
    /// ATTACK: a revealed key or nonce does not open the frozen commitment (key substitution).
    #[error("member {index}'s revealed key does not match its commitment")]
    RevealMismatch {
        /// Roster index.
        index: u32,
    },
    /// ATTACK: a second partial-sum request in a round this patient already answered.
    #[error("a second partial sum was requested in round {round}")]
    SecondPartialSumRequest {
        /// Round id.
        round: u64,
    },
    /// ATTACK: the delivery carries a share from a patient it leaves out of the contributor set
    /// (a withheld share with a false "dropped").
    #[error("member {from}'s share was delivered but it is left out of the contributor set")]
    DeliveryOmitsSender {
        /// The omitted sender.
        from: u32,
    },
    /// ATTACK: the result's contributor set differs from the one this patient answered for.
    #[error("the result is for another contributor set than the one this patient was given")]
    ContributorSetChanged,
    /// ATTACK: the result's partial sums omit or alter this patient's own.
    #[error("the result's partial sums omit or alter this patient's own")]
    OwnPartialSumAltered,
    /// ATTACK: the result's partial sums do not reconstruct one consistent aggregate (not on
    /// one polynomial, too few, or a count that is not the contributor set's).
    #[error("the result's partial sums do not give one consistent aggregate")]
    InconsistentPartialSums,
    /// ATTACK: the statistics the relay announced are not what the partial sums give.
    #[error("the relay's result differs from this device's computation")]
    LyingResult,
    /// ATTACK: the verdicts the relay forwarded are not the ones the checkers sent (their
    /// verdict tags do not add up).
    #[error("the verdicts do not match what the checkers sent")]
    ForgedVerdicts,
    /// The delivered shares or contributor set are malformed.
    #[error("delivered shares do not match the contributor set")]
    BadDelivery,
    /// A delivered share failed to open.
    #[error("share from member {from} failed to open")]
    Seal {
        /// Sender's roster index.
        from: u32,
        /// Why.
        #[source]
        source: SealError,
    },
    /// The value does not fit the study.
    #[error("value rejected: {0}")]
    Value(#[from] ValueError),
    /// The patient's answers do not fit the study's questionnaire.
    #[error("answers rejected: {0}")]
    Answer(#[from] AnswerError),
    /// The study's parameters (from the relay) are unusable: e.g. a questionnaire that does not
    /// lay out.
    #[error("study rejected: {0}")]
    Study(#[from] StudyError),
    /// A message could not be decoded.
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    /// The connection sends frames faster than its relay allows.
    #[error("too many messages; slow down")]
    RateLimited,
    /// The study exists but its state machine is not running (stopping or restarting).
    #[error("the study is not running")]
    StudyUnavailable,
    /// A `join` names a study other than the one the connection was opened for
    /// (`/ws?study=ID`): a load balancer routed the connection by that id.
    #[error("this connection was opened for another study")]
    StudyNotOfConnection,
}

/// Machine-readable error codes sent on the wire in `error` messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The message could not be decoded.
    BadMessage,
    /// Wrong state, round or study for this message.
    Unexpected,
    /// No such study.
    UnknownStudy,
    /// Invite code missing or wrong.
    Forbidden,
    /// Already joined, duplicate key or duplicate message.
    Duplicate,
    /// Shares, partial sum or roster malformed.
    Invalid,
    /// Below the minimum cohort, or not enough patients.
    TooFew,
    /// The sender is sending too fast or too much.
    RateLimited,
    /// The relay is shutting down or overloaded.
    Unavailable,
}

impl ErrorCode {
    /// The code as on the wire, e.g. `"bad_message"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::Unexpected => "unexpected",
            ErrorCode::UnknownStudy => "unknown_study",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::Invalid => "invalid",
            ErrorCode::TooFew => "too_few",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

impl ProtocolError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        use ProtocolError as E;
        match self {
            E::Decode(_) => ErrorCode::BadMessage,
            E::RateLimited => ErrorCode::RateLimited,
            E::StudyUnavailable => ErrorCode::Unavailable,
            E::WrongState { .. }
            | E::WrongRound { .. }
            | E::WrongStudy
            | E::NotInRoster
            | E::RevealTooLate { .. } => ErrorCode::Unexpected,
            E::UnknownStudy => ErrorCode::UnknownStudy,
            E::BadInvite | E::StudyNotOfConnection => ErrorCode::Forbidden,
            E::AlreadyJoined | E::DuplicateKey | E::DuplicateShares | E::DuplicatePartialSum => {
                ErrorCode::Duplicate
            }
            E::NotEnoughPatients { .. } | E::BelowMinimumCohort { .. } => ErrorCode::TooFew,
            E::StudyFull | E::TimedOut => ErrorCode::Unavailable,
            _ => ErrorCode::Invalid,
        }
    }
}

/// Why one question of a questionnaire is unacceptable (the key it concerns is named alongside,
/// in [`QuestionnaireError::Question`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QuestionProblem {
    /// The id is empty, too long, or has characters other than `a-z 0-9 - _`.
    #[error("must be 1-{max} characters of a-z, 0-9, '-' and '_'")]
    BadId {
        /// The longest id allowed, in bytes.
        max: usize,
    },
    /// An earlier question has the same id.
    #[error("is already used by an earlier question")]
    DuplicateId,
    /// A text (question or unit) is too long or has control characters.
    #[error("must be at most {max} bytes without control characters")]
    BadText {
        /// The longest text allowed, in bytes.
        max: usize,
    },
    /// An option label is empty, too long or has control characters.
    #[error("option {option} must be 1-{max} bytes without control characters")]
    BadLabel {
        /// Position of the label in `options`.
        option: usize,
        /// The longest label allowed, in bytes.
        max: usize,
    },
    /// An option label repeats an earlier one.
    #[error("option {option} repeats an earlier option")]
    DuplicateLabel {
        /// Position of the repeated label in `options`.
        option: usize,
    },
    /// Too few or too many options.
    #[error("must list between {min} and {max} options")]
    OptionCount {
        /// Fewest options.
        min: usize,
        /// Most options.
        max: usize,
    },
    /// `min` is not below `max`, or one of them has more decimals than the question.
    #[error("min must be below max and both must fit the question's decimals")]
    BadRange,
    /// Too many fractional digits.
    #[error("must be at most {max}")]
    TooManyDecimals {
        /// The limit.
        max: u8,
    },
    /// Bucket count out of range.
    #[error("must be between 1 and {max}")]
    BadBuckets {
        /// The limit.
        max: u16,
    },
}

/// A questionnaire (the questions of a study) is unacceptable. Names the question and the key,
/// never an answer.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QuestionnaireError {
    /// No questions, or more than the limit.
    #[error("a study needs between 1 and {max} questions, not {got}")]
    QuestionCount {
        /// Questions given.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// One question is unacceptable.
    #[error("question {index} ({id:?}): `{key}` {problem}")]
    Question {
        /// Position of the question (0-based).
        index: usize,
        /// Its id, or empty if the id itself is the problem.
        id: alloc::string::String,
        /// The JSON key concerned (`id`, `text`, `unit`, `min`, `max`, `decimals`, `buckets`,
        /// `options`).
        key: &'static str,
        /// What is wrong.
        problem: QuestionProblem,
    },
    /// The cohort size is zero or above the limit.
    #[error("cohort size must be between 1 and {max}")]
    BadSize {
        /// The limit.
        max: u32,
    },
    /// The vector would be longer than the limit (too many buckets, options or pairs).
    #[error(
        "the questionnaire needs {len} vector entries, at most {max} are allowed (the limit is passed at question {question:?})"
    )]
    TooLong {
        /// The first question (in order) at which the vector passes the limit.
        question: alloc::string::String,
        /// Entries needed.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `size × (range of this number question)²` could wrap the field.
    #[error(
        "question {question:?}: cohort size times its squared range could overflow the field; narrow the range, fewer decimals or a smaller cohort"
    )]
    WouldOverflow {
        /// The question's id.
        question: alloc::string::String,
    },
    /// `size × range_x × range_y` of a pair of number questions could wrap the field.
    #[error(
        "questions {first:?} and {second:?}: cohort size times the product of their ranges could overflow the field"
    )]
    PairWouldOverflow {
        /// The first question's id.
        first: alloc::string::String,
        /// The second question's id.
        second: alloc::string::String,
    },
}

/// A patient's answers do not fit a questionnaire. Names the question, never the answer.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// An answer for a question the study does not have.
    #[error("the study has no question {question:?}")]
    UnknownQuestion {
        /// The id given.
        question: alloc::string::String,
    },
    /// A required question has no answer.
    #[error("question {question:?} needs an answer")]
    Missing {
        /// The question's id.
        question: alloc::string::String,
    },
    /// A required question was skipped.
    #[error("question {question:?} is required and cannot be skipped")]
    SkippedRequired {
        /// The question's id.
        question: alloc::string::String,
    },
    /// A number given for a choice question, or an option for a number question.
    #[error("question {question:?} needs a different kind of answer")]
    WrongKind {
        /// The question's id.
        question: alloc::string::String,
    },
    /// A number answer is malformed, out of range or has too many decimals.
    #[error("question {question:?}: {source}")]
    Value {
        /// The question's id.
        question: alloc::string::String,
        /// Why.
        #[source]
        source: ValueError,
    },
    /// A choice answer is not one of the question's options.
    #[error("question {question:?}: not one of its options")]
    UnknownOption {
        /// The question's id.
        question: alloc::string::String,
    },
    /// The same question is answered (or skipped) twice.
    #[error("question {question:?} is answered more than once")]
    Duplicate {
        /// The question's id.
        question: alloc::string::String,
    },
    /// An answer argument is not of the form `ID=VALUE`.
    #[error("an answer must be written ID=VALUE")]
    Malformed,
}
