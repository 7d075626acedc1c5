//! Study helpers for the pages: value and spec checks before anything is sent.

use cohort_core::decimal::Decimal;
use cohort_core::encoding;
use cohort_core::message::PROTOCOL_VERSION;
use cohort_core::study::{StudyParams, StudySpec};
use wasm_bindgen::prelude::wasm_bindgen;
use zeroize::Zeroize;

use crate::error::WebError;

/// Parses and validates core `StudyParams` JSON (as in `GET /api/public/studies`).
pub fn parse_params(params_json: &str) -> Result<StudyParams, WebError> {
    let params: StudyParams = serde_json::from_str(params_json).map_err(|_| WebError::Params)?;
    params.validate()?;
    Ok(params)
}

/// Parses a value as typed and checks it against a study (format, decimals, range).
pub(crate) fn parse_value(params: Option<&StudyParams>, text: &str) -> Result<Decimal, WebError> {
    let value: Decimal = text.parse()?;
    if let Some(p) = params {
        encoding::check_value(p, &value)?;
    }
    Ok(value)
}

/// `checkValue(paramsJson, valueText)`: `undefined` if the value is acceptable for the study,
/// otherwise why not, in words that never repeat the value. Throws `ParamsError` or
/// `StudyError` if the parameters themselves are unusable. Nothing is sent anywhere.
#[wasm_bindgen(js_name = checkValue)]
pub fn check_value(params_json: &str, mut value_text: String) -> Result<Option<String>, WebError> {
    let params = parse_params(params_json)?;
    let checked = parse_value(Some(&params), &value_text);
    value_text.zeroize();
    Ok(checked.err().map(|e| e.to_string()))
}

/// `checkStudySpec(spec)`: `undefined` if `spec` is a valid study in the CLI's `--study` form
/// (`id=height,size=3,…`), otherwise why not.
#[wasm_bindgen(js_name = checkStudySpec)]
pub fn check_study_spec(spec: &str) -> Option<String> {
    spec.parse::<StudySpec>().err().map(|e| e.to_string())
}

/// `bucketEdges(paramsJson, questionId?)`: the lower edge of every histogram bucket and the
/// upper edge of the last, in the unit of the study's one question or of its number question
/// `questionId` (`buckets + 1` numbers). Throws `ParamsError` if there is no such number
/// question.
#[wasm_bindgen(js_name = bucketEdges)]
pub fn bucket_edges(params_json: &str, question_id: Option<String>) -> Result<Vec<f64>, WebError> {
    let params = parse_params(params_json)?;
    let Some(id) = question_id else {
        return Ok(params.bucket_edges());
    };
    params.bucket_edges_of(&id).ok_or(WebError::Params)
}

/// `protocolVersion()`: the wire protocol version this build speaks.
#[wasm_bindgen(js_name = protocolVersion)]
pub fn protocol_version() -> u32 {
    PROTOCOL_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> String {
        serde_json::to_string(&StudyParams::demo()).unwrap()
    }

    #[test]
    fn checks_values_without_quoting_them() {
        let p = demo();
        assert_eq!(check_value(&p, "172.5".into()), Ok(None));
        assert_eq!(check_value(&p, " 0 ".into()), Ok(None));
        for (bad, want) in [
            ("300.1", "outside the study's allowed range"),
            ("-1", "outside the study's allowed range"),
            (
                "170.25",
                "too many digits after the decimal point (at most 1)",
            ),
            (
                "12,5",
                "not a number: use digits with an optional '-' and '.'",
            ),
            ("", "not a number: use digits with an optional '-' and '.'"),
            ("99999999999999999999", "number has too many digits"),
        ] {
            let got = check_value(&p, bad.into()).unwrap().unwrap();
            assert_eq!(got, want, "{bad:?}");
            assert!(bad.is_empty() || !got.contains(bad));
        }
        assert_eq!(check_value("{}", "1".into()), Err(WebError::Params));
    }

    #[test]
    fn checks_specs_and_edges() {
        assert_eq!(check_study_spec("id=height,size=3,min=0,max=300"), None);
        assert_eq!(
            check_study_spec("id=Height").as_deref(),
            Some("study id must be 1-64 characters of a-z, 0-9, '-' and '_'")
        );
        let edges = bucket_edges(&demo(), None).unwrap();
        assert_eq!(bucket_edges(&demo(), Some("value".into())).unwrap(), edges);
        assert_eq!(
            bucket_edges(&demo(), Some("other".into())),
            Err(WebError::Params)
        );
        assert_eq!(edges.len(), 11);
        assert_eq!((edges[0], edges[10]), (0.0, 300.0));
        assert_eq!(protocol_version(), 3);
    }
}
