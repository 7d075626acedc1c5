//! The wasm layer inside wasm: node (`wasm-pack test --node web`) and headless Chromium
//! (`WASM_BINDGEN_USE_BROWSER=1 wasm-pack test --headless --chrome web`). Three `Patient`s
//! driven only through their JavaScript-facing methods run a whole round against core's
//! `Hospital`; value checks and errors come out as JS `Error`s; nothing shows the value.

#![cfg(target_arch = "wasm32")]

use cohort_core::message::{PatientToRelay, RelayToPatient, Wire};
use cohort_core::protocol::{Hospital, HospitalEvent};
use cohort_core::study::{StudyParams, StudySpec};
use cohort_core::testing::{Behaviour, Network, SimPatient};
use cohort_web::{
    WasmPatient, bucket_edges, check_answer, check_answers, check_study_json, check_study_spec,
    check_value,
};
use js_sys::{JSON, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

const VALUES: [&str; 3] = ["150.5", "172.3", "181.1"];

fn params() -> StudyParams {
    StudyParams::demo()
}

fn params_json() -> String {
    serde_json::to_string(&params()).unwrap()
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap()
}

fn text(obj: &JsValue, key: &str) -> String {
    get(obj, key).as_string().unwrap_or_default()
}

fn num(obj: &JsValue, key: &str) -> f64 {
    get(obj, key).as_f64().unwrap()
}

fn js_error(e: JsValue) -> (String, String) {
    let e: js_sys::Error = e.dyn_into().expect("a JS Error");
    (e.name().into(), e.message().into())
}

/// A `WasmPatient` on core's simulated network, driven only through the methods its
/// JavaScript-facing calls use (text and binary frames in and out); keeps every frame it sent.
struct JsPatient {
    inner: WasmPatient,
    sent: Vec<Wire>,
}

impl SimPatient for JsPatient {
    type Event = JsValue;

    fn poll_output(&mut self) -> Option<PatientToRelay> {
        let frame = self.inner.poll_wire()?;
        let msg = PatientToRelay::decode_wire(&frame).expect("patients send valid frames");
        self.sent.push(frame);
        Some(msg)
    }

    fn handle(&mut self, now_ms: u64, msg: RelayToPatient) -> Result<(), String> {
        let frame = msg.encode();
        self.inner
            .handle_wire(now_ms as f64, &frame)
            .map_err(|e| e.to_string())
    }

    fn poll_event(&mut self) -> Option<JsValue> {
        self.inner.poll_event()
    }

    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

/// One relay with core's Hospital and three patients on core's simulated network.
fn network(values: &[&str]) -> Network<JsPatient> {
    let spec = StudySpec {
        params: params(),
        deadlines: Default::default(),
        invite: None,
    };
    let patients = values
        .iter()
        .map(|v| JsPatient {
            inner: WasmPatient::new(0.0, "demo", (*v).into(), Some(params_json()), None).unwrap(),
            sent: Vec::new(),
        })
        .collect();
    Network::new(
        Hospital::new(spec, 1).unwrap(),
        patients,
        vec![Behaviour::Honest; values.len()],
    )
}

#[wasm_bindgen_test]
fn a_whole_round_of_three_patients() {
    let mut net = network(&VALUES);
    net.run();
    let sent: Vec<Wire> = net.patients.iter().flat_map(|p| p.sent.clone()).collect();

    let relay_code = net
        .hospital_events
        .iter()
        .find_map(|e| match e {
            HospitalEvent::KeysRevealed { safety_code, .. } => Some(safety_code.to_string()),
            _ => None,
        })
        .expect("the round started");
    assert!(
        net.hospital_events
            .iter()
            .any(|e| matches!(e, HospitalEvent::Completed(o) if o.questionnaire.count == 3))
    );

    for (i, events) in net.events.iter().enumerate() {
        let kinds: Vec<String> = events.iter().map(|e| text(e, "kind")).collect();
        assert_eq!(
            kinds.first().map(String::as_str),
            Some("welcomed"),
            "{kinds:?}"
        );
        for want in [
            "roster_frozen",
            "shares_sent",
            "partial_sum_sent",
            "completed",
        ] {
            assert!(
                kinds.iter().any(|k| k == want),
                "patient {i}: {want} missing in {kinds:?}"
            );
        }
        let frozen = events
            .iter()
            .find(|e| text(e, "kind") == "roster_frozen")
            .unwrap();
        assert_eq!(text(frozen, "safetyCode"), relay_code);
        assert_eq!(num(frozen, "n"), 3.0);
        let done = events
            .iter()
            .find(|e| text(e, "kind") == "completed")
            .unwrap();
        assert_eq!(num(done, "count"), 3.0);
        assert!((num(done, "sum") - 503.9).abs() < 1e-9);
        assert!((num(done, "mean") - 503.9 / 3.0).abs() < 1e-9);
        assert!(num(done, "stddev") > 0.0);
        assert_eq!(text(done, "safetyCode"), relay_code);
        assert_eq!(num(done, "rosterSize"), 3.0);
        let hist: js_sys::Array = get(done, "histogram").dyn_into().unwrap();
        let hist: Vec<f64> = hist.iter().map(|x| x.as_f64().unwrap()).collect();
        // 0–300 cm in 10 buckets of 30: 150.5 and 172.3 in [150, 180), 181.1 in [180, 210).
        assert_eq!(hist, [0., 0., 0., 0., 0., 2., 1., 0., 0., 0.]);
        assert!(net.patients[i].inner.is_finished());
        assert_eq!(net.patients[i].inner.state_name(), "finished");
    }

    assert!(sent.len() >= 9, "join, shares and partial sum from each");
    // In clear, a value would be its text, or its fixed-point form x' = 10·x (or x'²) as a
    // number; base64 has no '.', and random field elements are never these small numbers.
    let scaled: Vec<u64> = VALUES
        .iter()
        .map(|v| v.replace('.', "").parse::<u64>().unwrap())
        .flat_map(|x| [x, x * x])
        .collect();
    let mut binary = 0;
    for frame in &sent {
        for v in VALUES {
            let clear = frame.as_bytes().windows(v.len()).any(|w| w == v.as_bytes());
            assert!(!clear, "a frame carries a value in clear");
        }
        let mut numbers = Vec::new();
        match frame {
            Wire::Text(t) => collect_numbers(&serde_json::from_str(t).unwrap(), &mut numbers),
            Wire::Binary(_) => {
                binary += 1;
                if let PatientToRelay::PartialSum(p) = PatientToRelay::decode_wire(frame).unwrap() {
                    numbers.extend(p.sum.iter().map(|e| e.value()));
                }
            }
        }
        assert!(
            !numbers.iter().any(|n| scaled.contains(n)),
            "a frame carries a scaled value"
        );
    }
    assert_eq!(
        binary, 12,
        "shares, verifier shares, verdict and partial sum from each, as binary frames"
    );
}

fn collect_numbers(v: &serde_json::Value, out: &mut Vec<u64>) {
    match v {
        serde_json::Value::Number(n) => out.extend(n.as_u64()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_numbers(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_numbers(x, out)),
        _ => {}
    }
}

#[wasm_bindgen_test]
fn values_are_checked_before_anything_is_queued() {
    let p = params_json();
    assert_eq!(check_value(&p, "172.5".into()).unwrap(), None);
    assert_eq!(
        check_value(&p, "300.1".into()).unwrap().as_deref(),
        Some("outside the study's allowed range")
    );
    assert_eq!(
        check_value(&p, "1.75".into()).unwrap().as_deref(),
        Some("too many digits after the decimal point (at most 1)")
    );
    assert_eq!(
        check_value(&p, "1,75".into()).unwrap().as_deref(),
        Some("not a number: use digits with an optional '-' and '.'")
    );
    let (name, _) = js_error(check_value("not json", "1".into()).unwrap_err().into());
    assert_eq!(name, "ParamsError");

    for (bad, message) in [
        ("300.5", "outside the study's allowed range"),
        (
            "12.34",
            "too many digits after the decimal point (at most 1)",
        ),
        (
            "tall",
            "not a number: use digits with an optional '-' and '.'",
        ),
    ] {
        let err = WasmPatient::new(0.0, "demo", bad.into(), Some(p.clone()), None).unwrap_err();
        assert_eq!(
            js_error(err.into()),
            ("ValueError".into(), message.into()),
            "{bad}"
        );
    }

    assert_eq!(
        check_study_spec("id=height,size=3,threshold=2,min=0,max=300"),
        None
    );
    assert!(check_study_spec("id=height,size=1").is_some());
    assert_eq!(bucket_edges(&p, None).unwrap()[1], 30.0);
}

#[wasm_bindgen_test]
fn a_relay_that_sends_another_study_is_refused() {
    let mut p = WasmPatient::new(0.0, "demo", "172.5".into(), Some(params_json()), None).unwrap();
    p.poll_wire().expect("join");
    let mut other = params();
    other.max = "250".parse().unwrap();
    let welcome = format!(
        r#"{{"type":"welcome","v":3,"study":{},"round":1,"enrolled":1}}"#,
        serde_json::to_string(&other).unwrap()
    );
    let (name, message) = js_error(p.handle(1.0, &welcome).unwrap_err().into());
    assert_eq!(name, "ProtocolError");
    assert_eq!(
        message,
        "roster parameters differ from the study this patient joined"
    );
    let ev = p.poll_event().unwrap();
    assert_eq!(text(&ev, "kind"), "refused");
    assert_eq!(
        p.poll_wire().as_ref().and_then(Wire::as_text),
        Some(r#"{"type":"leave","v":3}"#)
    );
    assert!(p.is_finished());
}

#[wasm_bindgen_test]
fn malformed_frames_and_relay_errors() {
    let mut p = WasmPatient::new(0.0, "demo", "172.5".into(), None, None).unwrap();
    p.poll_wire().expect("join");
    let (name, _) = js_error(p.handle(1.0, "{\"type\":").unwrap_err().into());
    assert_eq!(name, "DecodeError");
    let (name, message) = js_error(
        p.handle(1.0, r#"{"type":"hello","v":3}"#)
            .unwrap_err()
            .into(),
    );
    assert_eq!(name, "DecodeError");
    assert!(message.starts_with("unknown message type"), "{message}");
    assert!(!p.is_finished(), "garbage alone does not end the round");

    let err = r#"{"type":"error","v":3,"code":"unknown_study","message":"no such study"}"#;
    p.handle(2.0, err).unwrap();
    let ev = p.poll_event().unwrap();
    assert_eq!(text(&ev, "kind"), "relay_error");
    assert_eq!(text(&ev, "code"), "unknown_study");
    assert_eq!(text(&ev, "message"), "no such study");
    assert!(p.is_finished());
}

#[wasm_bindgen_test]
fn neither_debug_nor_javascript_shows_the_value() {
    let mut p = WasmPatient::new(0.0, "demo", "172.5".into(), Some(params_json()), None).unwrap();
    let debug = format!("{p:?}");
    assert!(!debug.contains("172"), "{debug}");
    assert_eq!(p.to_js_string(), debug);
    let join = p.poll_wire().unwrap();
    let join = join.as_text().expect("join is text");
    assert!(!join.contains("172"), "{join}");

    let js: JsValue = p.into();
    let json = JSON::stringify(&js)
        .unwrap()
        .as_string()
        .unwrap_or_default();
    assert!(!json.contains("172"), "{json}");
    let keys = js_sys::Object::keys(js.unchecked_ref::<js_sys::Object>());
    for k in keys.iter() {
        let v = Reflect::get(&js, &k).unwrap();
        assert!(!format!("{v:?}").contains("172"));
    }
    let string_fn: js_sys::Function = Reflect::get(&js_sys::global(), &"String".into())
        .unwrap()
        .dyn_into()
        .unwrap();
    let shown = string_fn
        .call1(&JsValue::NULL, &js)
        .unwrap()
        .as_string()
        .unwrap();
    assert_eq!(shown, debug, "String(patient) is the Debug text");
}

#[wasm_bindgen_test]
fn timeouts_pass_through() {
    let mut p = WasmPatient::new(0.0, "demo", "172.5".into(), Some(params_json()), None).unwrap();
    assert_eq!(p.poll_timeout(), None, "no timeout unless asked for");
    p.set_timeout(1000.0, Some(5000.0));
    assert_eq!(p.poll_timeout(), Some(6000.0));
    p.handle_timeout(5999.0);
    assert!(!p.is_finished());
    p.handle_timeout(6000.0);
    assert!(p.is_finished());
    let ev = p.poll_event().unwrap();
    assert_eq!(text(&ev, "kind"), "refused");
    assert_eq!(text(&ev, "message"), "timed out waiting for the relay");
    p.poll_wire().expect("join");
    assert_eq!(
        p.poll_wire().as_ref().and_then(Wire::as_text),
        Some(r#"{"type":"leave","v":3}"#)
    );

    let mut q = WasmPatient::new(0.0, "demo", "1".into(), None, None).unwrap();
    q.leave();
    assert!(q.is_finished());
    assert_eq!(q.state_name(), "finished");
}

const SURVEY: &str = r#"{"id":"survey","size":3,"threshold":3,"min_cohort":3,"questions":[
    {"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13},
    {"id":"weight","kind":"number","text":"How much do you weigh?","unit":"kg","min":30,"max":200,"decimals":1,"buckets":17},
    {"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"]},
    {"id":"sleep","kind":"number","text":"Hours of sleep?","unit":"h","min":0,"max":24,"decimals":1,"buckets":12,"optional":true}]}"#;

const ANSWERS: [&str; 3] = [
    r#"{"height":"160","weight":"55.5","smoker":"no","sleep":"7.5"}"#,
    r#"{"height":"175.5","weight":"72","smoker":"yes","sleep":null}"#,
    r#"{"height":"190","weight":"90","smoker":"no","sleep":"6"}"#,
];

#[wasm_bindgen_test]
fn a_questionnaire_round_reports_every_question_pair_and_option() {
    let spec = cohort_core::study::StudySpec::from_json(SURVEY).unwrap();
    let params_json = serde_json::to_string(&spec.params).unwrap();
    let patients = ANSWERS
        .iter()
        .map(|a| JsPatient {
            inner: WasmPatient::with_answers(
                0.0,
                "survey",
                (*a).into(),
                Some(params_json.clone()),
                None,
            )
            .unwrap(),
            sent: Vec::new(),
        })
        .collect();
    let mut net = Network::new(
        Hospital::new(spec, 1).unwrap(),
        patients,
        vec![Behaviour::Honest; 3],
    );
    net.run();
    for events in &net.events {
        let done = events
            .iter()
            .find(|e| text(e, "kind") == "completed")
            .expect("completed");
        assert_eq!(num(done, "count"), 3.0);
        // No single-number fields for a questionnaire.
        assert!(get(done, "mean").is_undefined());
        let json: serde_json::Value =
            serde_json::from_str(&String::from(JSON::stringify(done).unwrap())).unwrap();
        let height = &json["questions"]["height"];
        assert_eq!(height["count"], 3);
        assert!((height["mean"].as_f64().unwrap() - 525.5 / 3.0).abs() < 1e-9);
        assert_eq!(json["questions"]["smoker"]["counts"]["no"], 2);
        assert_eq!(json["questions"]["smoker"]["counts"]["used to"], 0);
        assert_eq!(json["questions"]["sleep"]["count"], 2);
        let pair = json["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["x"] == "height" && p["y"] == "weight")
            .unwrap();
        assert_eq!(pair["n"], 3);
        assert!(pair["r"].as_f64().unwrap() > 0.99);
        assert!(!json["byOption"].as_array().unwrap().is_empty());
    }
}

#[wasm_bindgen_test]
fn answers_are_checked_per_question_naming_it() {
    let spec = cohort_core::study::StudySpec::from_json(SURVEY).unwrap();
    let p = serde_json::to_string(&spec.params).unwrap();
    let s = |t: &str| JsValue::from_str(t);
    assert_eq!(check_answer(&p, "height", s("172.5")).unwrap(), None);
    assert_eq!(
        check_answer(&p, "height", s("99")).unwrap().as_deref(),
        Some(r#"question "height": outside the study's allowed range"#)
    );
    assert_eq!(check_answer(&p, "sleep", JsValue::NULL).unwrap(), None);
    assert!(check_answer(&p, "smoker", JsValue::NULL).unwrap().is_some());
    assert!(
        check_answer(&p, "weight", JsValue::UNDEFINED)
            .unwrap()
            .is_some()
    );
    assert!(check_answers(&p, ANSWERS[1].into()).unwrap().is_undefined());
    let bad = check_answers(&p, ANSWERS[1].replace("yes", "maybe")).unwrap();
    assert_eq!(text(&bad, "question"), "smoker");
    assert!(!text(&bad, "message").contains("maybe"));
    let (name, _) = js_error(check_answers(&p, "[1]".into()).unwrap_err().into());
    assert_eq!(name, "AnswersError");
    let err = WasmPatient::with_answers(
        0.0,
        "survey",
        ANSWERS[0].replace("160", "99"),
        Some(p),
        None,
    )
    .unwrap_err();
    let (name, message) = js_error(err.into());
    assert_eq!(name, "ProtocolError");
    assert!(message.contains("\"height\""), "{message}");
    assert!(!message.contains("99"), "{message}");
    assert_eq!(check_study_json(SURVEY), None);
    assert!(check_study_json(r#"{"id":"x"}"#).is_none());
    assert!(check_study_json(r#"{"id":"x","questions":[]}"#).is_some());
}
