//! The one error type of the JavaScript boundary, turned into a JS `Error` when thrown.

use cohort_core::error::{DecodeError, ProtocolError, StudyError, ValueError};
use core::fmt;
use wasm_bindgen::JsValue;

/// Why a call from JavaScript failed. Thrown as a JS `Error` whose `name` is
/// [`WebError::name`] and whose `message` is the `Display` text. No variant carries a value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebError {
    /// The patient's value does not parse or does not fit the study.
    Value(ValueError),
    /// A frame from the relay is not a well-formed message.
    Decode(DecodeError),
    /// The patient machine refused a message (or refused to go on with the round).
    Protocol(ProtocolError),
    /// Study parameters or a study spec are unacceptable.
    Study(StudyError),
    /// The study parameters given are not the JSON of core's `StudyParams`.
    Params,
    /// The browser gave no secure random numbers (`crypto.getRandomValues`).
    Random,
    /// The answers given are not a JSON object of question id to text, number or `null`
    /// (or answer a question twice).
    Answers,
}

impl WebError {
    /// The JS `Error.name`: the Rust error type, so that pages can tell them apart.
    pub fn name(&self) -> &'static str {
        match self {
            WebError::Value(_) => "ValueError",
            WebError::Decode(_) => "DecodeError",
            WebError::Protocol(_) => "ProtocolError",
            WebError::Study(_) => "StudyError",
            WebError::Params => "ParamsError",
            WebError::Random => "RandomError",
            WebError::Answers => "AnswersError",
        }
    }
}

impl fmt::Display for WebError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebError::Value(e) => e.fmt(f),
            WebError::Decode(e) => e.fmt(f),
            WebError::Protocol(e) => e.fmt(f),
            WebError::Study(e) => e.fmt(f),
            WebError::Params => f.write_str("study parameters are not valid StudyParams JSON"),
            WebError::Random => f.write_str("this browser gave no secure random numbers"),
            WebError::Answers => f.write_str(
                "answers must be one JSON object of question id to text, number or null, each question once",
            ),
        }
    }
}

impl From<ValueError> for WebError {
    fn from(e: ValueError) -> WebError {
        WebError::Value(e)
    }
}

impl From<DecodeError> for WebError {
    fn from(e: DecodeError) -> WebError {
        WebError::Decode(e)
    }
}

impl From<ProtocolError> for WebError {
    fn from(e: ProtocolError) -> WebError {
        WebError::Protocol(e)
    }
}

impl From<StudyError> for WebError {
    fn from(e: StudyError) -> WebError {
        WebError::Study(e)
    }
}

impl From<WebError> for JsValue {
    fn from(e: WebError) -> JsValue {
        let err = js_sys::Error::new(&e.to_string());
        err.set_name(e.name());
        err.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages() {
        let e = WebError::from(ValueError::OutOfRange);
        assert_eq!(e.name(), "ValueError");
        assert_eq!(e.to_string(), "outside the study's allowed range");
        let e = WebError::from(DecodeError::Truncated);
        assert_eq!(
            (e.name(), e.to_string().as_str()),
            ("DecodeError", "JSON ended early")
        );
        assert_eq!(WebError::Params.name(), "ParamsError");
    }
}
