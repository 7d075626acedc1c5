//! Questionnaire helpers for the pages: a patient's answers as JSON, and their checks.
//!
//! The page hands answers over as one JSON object, core's [`Answers`] form:
//! `{"height": "172.5", "smoker": "yes", "alcohol": null}` (a number as typed, an option's label,
//! `null` for "prefer not to say"). Every check is core's ([`Layout::check`]); what comes back
//! names the question, never the answer.

use cohort_core::answer::{Answer, Answers};
use cohort_core::error::AnswerError;
use cohort_core::layout::Layout;
use cohort_core::study::StudySpec;
use wasm_bindgen::prelude::*;
use zeroize::Zeroize;

use crate::error::WebError;
use crate::study::parse_params;

/// Reads answers in core's JSON form. A malformed object is [`WebError::Answers`], whose
/// message never repeats the text (serde's own message could quote a value).
pub fn parse_answers(mut answers_json: String) -> Result<Answers, WebError> {
    let parsed = serde_json::from_str::<Answers>(&answers_json).map_err(|_| WebError::Answers);
    answers_json.zeroize();
    parsed
}

/// The question an answer error is about, if it names one.
pub fn question_of(e: &AnswerError) -> Option<&str> {
    match e {
        AnswerError::UnknownQuestion { question }
        | AnswerError::Missing { question }
        | AnswerError::SkippedRequired { question }
        | AnswerError::WrongKind { question }
        | AnswerError::Value { question, .. }
        | AnswerError::UnknownOption { question }
        | AnswerError::Duplicate { question } => Some(question),
        _ => None,
    }
}

/// Checks one answer against its question alone (core's [`Layout::check`] over a questionnaire
/// of just that question). `None` is no answer, [`Answer::Skip`] "prefer not to say".
pub(crate) fn check_one(
    params_json: &str,
    id: &str,
    answer: Option<Answer>,
) -> Result<Option<AnswerError>, WebError> {
    let params = parse_params(params_json)?;
    let Some(q) = params.question_list().into_iter().find(|q| q.id == id) else {
        return Ok(Some(AnswerError::UnknownQuestion {
            question: id.into(),
        }));
    };
    let layout = Layout::new(core::slice::from_ref(&q), params.size)
        .map_err(|e| WebError::Study(e.into()))?;
    let mut answers = Answers::new();
    if let Some(a) = answer {
        answers.set(id, a).expect("one answer");
    }
    Ok(layout.check(&answers).err())
}

/// `checkAnswer(paramsJson, questionId, answer)`: `undefined` if `answer` suits question
/// `questionId` of the study, otherwise why not (core's message, naming the question, never
/// the answer). `answer` is the text typed or the option's label, `null` for "prefer not to
/// say", `undefined` for no answer yet. Throws `ParamsError` or `StudyError` for unusable
/// parameters. Nothing is sent anywhere.
#[wasm_bindgen(js_name = checkAnswer)]
pub fn check_answer(
    params_json: &str,
    question_id: &str,
    answer: JsValue,
) -> Result<Option<String>, WebError> {
    let answer = if answer.is_undefined() {
        None
    } else if answer.is_null() {
        Some(Answer::Skip)
    } else {
        // A non-string (a number from a script) is read as its text, as JSON would be.
        let text = answer
            .as_string()
            .or_else(|| answer.as_f64().map(|x| format!("{x}")))
            .ok_or(WebError::Answers)?;
        Some(Answer::Text(text))
    };
    Ok(check_one(params_json, question_id, answer)?.map(|e| e.to_string()))
}

/// `checkAnswers(paramsJson, answersJson)`: `undefined` if the answers (core's JSON form)
/// suit the study's whole questionnaire, otherwise `{question, message}` for the first
/// problem (`question` is `undefined` when none is named). Throws `ParamsError`, `StudyError`
/// or `AnswersError` (not an object of answers).
#[wasm_bindgen(js_name = checkAnswers)]
pub fn check_answers(params_json: &str, answers_json: String) -> Result<JsValue, WebError> {
    let params = parse_params(params_json)?;
    let answers = parse_answers(answers_json)?;
    let layout = params.layout()?;
    Ok(match layout.check(&answers) {
        Ok(_) => JsValue::UNDEFINED,
        Err(e) => {
            let v = serde_json::json!({
                "question": question_of(&e),
                "message": e.to_string(),
            });
            js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::UNDEFINED)
        }
    })
}

/// `checkStudyJson(json)`: `undefined` if `json` is a valid study in its JSON form (as
/// `POST /api/studies` and `--study-file` take it, questions included), otherwise why not.
#[wasm_bindgen(js_name = checkStudyJson)]
pub fn check_study_json(json: &str) -> Option<String> {
    StudySpec::from_json(json)
        .and_then(|s| s.validate().map(|_| s))
        .err()
        .map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SURVEY: &str = r#"{"id":"survey","size":3,"threshold":3,"min_cohort":3,"questions":[
        {"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13},
        {"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"],"optional":true}]}"#;

    fn survey_params() -> String {
        serde_json::to_string(&StudySpec::from_json(SURVEY).unwrap().params).unwrap()
    }

    #[test]
    fn one_answer_at_a_time_naming_the_question() {
        let p = survey_params();
        let text = |t: &str| Some(Answer::Text(t.into()));
        assert_eq!(check_one(&p, "height", text("172.5")).unwrap(), None);
        let e = check_one(&p, "height", text("230.5")).unwrap().unwrap();
        assert_eq!(
            e.to_string(),
            r#"question "height": outside the study's allowed range"#
        );
        let e = check_one(&p, "height", None).unwrap().unwrap();
        assert_eq!(e.to_string(), r#"question "height" needs an answer"#);
        assert!(
            check_one(&p, "height", Some(Answer::Skip))
                .unwrap()
                .is_some()
        );
        assert_eq!(check_one(&p, "smoker", Some(Answer::Skip)).unwrap(), None);
        assert_eq!(check_one(&p, "smoker", text("used to")).unwrap(), None);
        let e = check_one(&p, "smoker", text("maybe")).unwrap().unwrap();
        assert_eq!(question_of(&e), Some("smoker"));
        assert!(!e.to_string().contains("maybe"));
        let e = check_one(&p, "age", text("3")).unwrap().unwrap();
        assert_eq!(question_of(&e), Some("age"));
    }

    #[test]
    fn answers_json_and_study_json() {
        assert!(parse_answers(r#"{"height":"172.5","smoker":null}"#.into()).is_ok());
        for bad in [
            r#"["172.5"]"#,
            r#"{"height":true}"#,
            "{",
            r#"{"a":1,"a":2}"#,
        ] {
            let e = parse_answers(bad.into()).unwrap_err();
            assert_eq!(e, WebError::Answers);
            assert!(!e.to_string().contains("172"));
        }
        assert_eq!(check_study_json(SURVEY), None);
        let bad = SURVEY.replace(r#""no","yes","used to""#, r#""no""#);
        assert!(check_study_json(&bad).is_some());
        assert!(check_study_json("[]").is_some());
    }
}
