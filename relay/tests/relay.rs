//! End-to-end tests against an in-process relay on port 0: real TLS 1.3, real WebSocket
//! clients driving the core's Patient machine, the real HTTP API.

mod common;

use std::collections::BTreeSet;

use cohort_core::message::{AbandonReason, RelayToPatient};
use cohort_relay::client::{PatientError, PatientOutcome};
use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

fn study(id: &str, size: u32, threshold: u32, extra: &str) -> String {
    format!("id={id},size={size},threshold={threshold},min=0,max=300,decimals=1,buckets=10{extra}")
}

/// Checks one study's round: every patient saw the same exact statistics and safety code,
/// and the API returns the same.
async fn check_round(
    t: &TestRelay,
    id: &str,
    values: &[String],
    reports: &[cohort_relay::client::PatientReport],
) {
    let want = expected(values, 0, 300, 1, 10);
    let first = result_json(&reports[0]);
    let n = values.len() as u64;
    for r in reports {
        let got = result_json(r);
        assert_stats(&got, &want);
        assert_eq!(got, first, "every patient of {id} sees the same result");
        assert_eq!(
            r.safety_code.as_ref().map(|c| c.to_string()),
            Some(first["safety_code"].as_str().unwrap().to_string()),
            "patient's own safety code matches the result's"
        );
    }
    assert_eq!(first["study"], id);
    assert_eq!(first["roster_size"].as_u64(), Some(n));
    let all: Vec<u64> = (1..=n).collect();
    assert_eq!(first["contributors"], serde_json::json!(all));
    let res = t
        .get(&format!("/api/studies/{id}/results"), Some(TOKEN))
        .await;
    assert_eq!(res.status, 200);
    let rows = res.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_stats(&rows[0], &want);
    assert_eq!(rows[0]["round"], first["round"]);
    assert_eq!(rows[0]["safety_code"], first["safety_code"]);
    assert_eq!(rows[0]["roster_size"].as_u64(), Some(n));
    assert_eq!(rows[0]["bucket_edges"].as_array().unwrap().len(), 11);
    assert!(rows[0]["finished_at_ms"].as_u64() >= rows[0]["started_at_ms"].as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_statistics_for_3_10_and_50_patients() {
    let t = TestRelay::start(&[
        &study("three", 3, 3, ""),
        &study("ten", 10, 7, ",min_cohort=5"),
        &study("fifty", 50, 30, ""),
    ])
    .await;
    let (ws, ca) = (t.ws_url(), t.ca());
    let cases = [("three", 3, 11u64), ("ten", 10, 12), ("fifty", 50, 13)];
    // All three studies run at the same time.
    let runs = cases.map(|(id, n, seed)| {
        let values = random_values(n, seed, 0, 300, 1);
        let (ws, ca) = (ws.clone(), ca.clone());
        tokio::spawn(async move {
            let reports = run_patients(&ws, &ca, id, &values).await;
            (id, values, reports)
        })
    });
    for run in runs {
        let (id, values, reports) = run.await.unwrap();
        check_round(&t, id, &values, &reports).await;
        assert_eq!(
            reports[0].threshold,
            Some(if id == "three" {
                3
            } else if id == "ten" {
                7
            } else {
                30
            })
        );
    }
    // Each study enrols its next round.
    let status = t.get("/api/studies/three", Some(TOKEN)).await.json();
    assert_eq!(status["completed_rounds"], 1);
    assert_eq!(status["enrolling_round"], 2);
    assert_eq!(status["running"], serde_json::Value::Null);
    let values = random_values(3, 14, 0, 300, 1);
    let reports = run_patients(&ws, &ca, "three", &values).await;
    let second = result_json(&reports[0]);
    assert_eq!(second["round"], 2);
    assert_stats(&second, &expected(&values, 0, 300, 1, 10));
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_studies_at_once_do_not_mix() {
    let t = TestRelay::start(&[
        &study("a", 4, 4, ""),
        "id=b,size=4,threshold=3,min=-50,max=50,decimals=2,buckets=5",
    ])
    .await;
    let (ws, ca) = (t.ws_url(), t.ca());
    let va = random_values(4, 21, 0, 300, 1);
    let vb = random_values(4, 22, -50, 50, 2);
    // Interleave the joins of both studies.
    let mut opts = Vec::new();
    for i in 0..4 {
        opts.push(options(&ws, &ca, "a", &va[i]));
        opts.push(options(&ws, &ca, "b", &vb[i]));
    }
    let results = run_all(opts).await;
    let ea = expected(&va, 0, 300, 1, 10);
    let eb = expected(&vb, -50, 50, 2, 5);
    let mut codes = BTreeSet::new();
    for (i, r) in results.iter().enumerate() {
        let got = result_json(r.as_ref().unwrap());
        let (id, want) = if i % 2 == 0 { ("a", &ea) } else { ("b", &eb) };
        assert_eq!(got["study"], id);
        assert_eq!(got["round"], 1);
        assert_stats(&got, want);
        codes.insert((id, got["safety_code"].as_str().unwrap().to_string()));
    }
    assert_eq!(codes.len(), 2, "one safety code per study: {codes:?}");
    for (id, want) in [("a", &ea), ("b", &eb)] {
        let rows = t
            .get(&format!("/api/studies/{id}/results"), Some(TOKEN))
            .await
            .json();
        assert_eq!(rows.as_array().unwrap().len(), 1);
        assert_stats(&rows[0], want);
    }
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_refuses_missing_or_wrong_token() {
    let t = TestRelay::start(&[&study("s", 3, 3, "")]).await;
    let wrong = "test-admin-token-0123456789abcdeF";
    for path in [
        "/api/studies",
        "/api/studies/s",
        "/api/studies/s/results",
        "/api/studies/s/rounds",
        "/api/studies/nope",
    ] {
        for token in [None, Some(wrong), Some("")] {
            let r = t.get(path, token).await;
            assert_eq!(r.status, 401, "{path} with {token:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert!(r.json()["error"].is_string());
        }
        assert_ne!(t.get(path, Some(TOKEN)).await.status, 401, "{path}");
    }
    // A wrong scheme is refused too.
    let r = https(&t.base(), &t.ca(), "GET", "/api/studies", None, None).await;
    assert_eq!(r.status, 401);
    let body = r#"{"spec":"id=sneaky,size=3"}"#;
    assert_eq!(
        t.post("/api/studies", Some(wrong), Some(body)).await.status,
        401
    );
    assert_eq!(t.post("/api/studies/s/start", None, None).await.status, 401);
    let list = t.get("/api/studies", Some(TOKEN)).await.json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|s| s["params"]["id"] != "sneaky")
    );
    // The public list needs no token and shows no admin-only fields.
    let public = t.get("/api/public/studies", None).await;
    assert_eq!(public.status, 200);
    assert_eq!(public.json()[0]["params"]["id"], "s");
    assert!(public.json()[0].get("deadlines").is_none());
    // The dashboard socket closes with 4401 on a wrong token.
    let ws_base = t.ws_url();
    let mut dash = dashboard(&ws_base, &t.ca(), wrong).await;
    let close = tokio::time::timeout(LIMIT, dash.next()).await.unwrap();
    match close {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 4401);
            assert_eq!(frame.reason.as_str(), "unauthorized");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_creates_starts_and_follows_a_round() {
    let t = TestRelay::start(&[&study("s", 3, 3, "")]).await;
    let (ws, ca) = (t.ws_url(), t.ca());
    let mut dash = dashboard(&ws, &ca, TOKEN).await;
    let snap = wait_feed(&mut dash, |v| v["type"] == "snapshot").await;
    assert_eq!(snap["studies"][0]["params"]["id"], "s");

    let spec = r#"{"spec":"id=early,size=5,threshold=3,min_cohort=3,min=0,max=300,decimals=1,buckets=10"}"#;
    let created = t.post("/api/studies", Some(TOKEN), Some(spec)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["params"]["size"], 5);
    assert_eq!(created.json()["enrolling_round"], 1);
    let created = wait_feed(&mut dash, |v| {
        v["type"] == "status" && v["study"]["params"]["id"] == "early"
    })
    .await;
    assert_eq!(created["study"]["enrolling_round"], 1);
    assert_eq!(created["ended"], serde_json::Value::Null);
    assert_eq!(
        t.post("/api/studies", Some(TOKEN), Some(spec)).await.status,
        409
    );
    let bad = t
        .post(
            "/api/studies",
            Some(TOKEN),
            Some(r#"{"spec":"id=x,size=1"}"#),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("cohort size")
    );
    assert_eq!(
        t.post("/api/studies", Some(TOKEN), Some("not json"))
            .await
            .status,
        400
    );
    let none = t.post("/api/studies/early/start", Some(TOKEN), None).await;
    assert_eq!(none.status, 409);
    assert_eq!(
        none.json()["error"],
        "0 enrolled, at least 3 needed to start"
    );
    assert_eq!(
        t.post("/api/studies/ghost/start", Some(TOKEN), None)
            .await
            .status,
        404
    );

    // Three of five enrol; the dashboard starts the round early.
    let values = random_values(3, 31, 0, 300, 1);
    let opts = values
        .iter()
        .map(|v| options(&ws, &ca, "early", v))
        .collect();
    let patients = tokio::spawn(run_all(opts));
    // Every feed frame is the study's whole status.
    let early =
        |v: &serde_json::Value| v["type"] == "status" && v["study"]["params"]["id"] == "early";
    wait_feed(&mut dash, |v| early(v) && v["study"]["enrolled"] == 3).await;
    let started = t.post("/api/studies/early/start", Some(TOKEN), None).await;
    assert_eq!(started.status, 200, "{}", started.body);
    let running = &started.json()["running"];
    assert_eq!(running["round"], 1);
    assert_eq!(running["roster_size"], 3);
    assert_eq!(running["threshold"], 3);
    let code = running["safety_code"].as_str().unwrap().to_string();
    let rs = wait_feed(&mut dash, |v| early(v) && v["study"]["running"].is_object()).await;
    assert_eq!(rs["study"]["running"]["safety_code"], code.as_str());
    assert_eq!(rs["study"]["running"]["phase"], "awaiting reveals");
    assert_eq!(
        code, "(awaiting reveals)",
        "the code exists once the keys are revealed"
    );
    // The keys are revealed: the status now has the code, and the round awaits shares.
    let rs = wait_feed(&mut dash, |v| {
        early(v) && v["study"]["running"]["phase"] == "awaiting shares"
    })
    .await;
    let code = rs["study"]["running"]["safety_code"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(code.len(), 14, "{code}");
    let sd = wait_feed(&mut dash, |v| {
        early(v) && v["study"]["running"]["phase"] == "awaiting partial sums"
    })
    .await;
    assert_eq!(sd["study"]["running"]["received"], 0);
    let done = wait_feed(&mut dash, |v| early(v) && v["ended"].is_object()).await;
    let want = expected(&values, 0, 300, 1, 10);
    assert_eq!(done["ended"]["status"], "completed");
    assert_stats(&done["ended"], &want);
    assert_eq!(done["ended"]["safety_code"], code.as_str());
    assert_eq!(done["study"]["running"], serde_json::Value::Null);
    assert_eq!(done["study"]["completed_rounds"], 1);
    for r in patients.await.unwrap() {
        let got = result_json(&r.unwrap());
        assert_stats(&got, &want);
        assert_eq!(got["safety_code"], code.as_str());
    }
    let csv = t.get("/api/studies/early/results.csv", Some(TOKEN)).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "study",
            "round",
            "finished_at_ms",
            "question",
            "with",
            "option",
            "bucket",
            "statistic",
            "value"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let find = |question: &str, statistic: &str, bucket: &str| -> String {
        let r = records
            .iter()
            .find(|r| &r[3] == question && &r[7] == statistic && &r[6] == bucket)
            .unwrap_or_else(|| panic!("{question} {statistic} {bucket}: {}", csv.body));
        assert_eq!((&r[0], &r[1]), ("early", "1"));
        r[8].to_string()
    };
    assert_eq!(find("", "count", ""), "3");
    assert_eq!(find("", "safety_code", ""), code);
    assert_eq!(find("value", "count", ""), "3");
    let mean: f64 = find("value", "mean", "").parse().unwrap();
    assert!((mean - want.mean).abs() <= 1e-9 * want.mean.abs().max(1.0));
    for (b, n) in want.histogram.iter().enumerate() {
        let (lo, hi) = (30 * b, 30 * (b + 1));
        let bucket = if b == 9 {
            format!("[{lo}, {hi}]")
        } else {
            format!("[{lo}, {hi})")
        };
        assert_eq!(find("value", "histogram", &bucket), n.to_string());
    }
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropouts_after_sharing_within_tolerance_complete_otherwise_abandon() {
    // Without validity proofs: with them a patient that leaves after sharing is no
    // contributor and its checkee goes unchecked (core/tests/sim.rs covers that).
    let t = TestRelay::start(&[
        &study("shamir", 4, 3, ",min_cohort=3,proofs=off"),
        &study("additive", 3, 3, ",proofs=off"),
    ])
    .await;
    let (ws, ca) = (t.ws_url(), t.ca());
    // Shamir 3-of-4: one patient leaves after sharing; its value still counts.
    let values = random_values(4, 41, 0, 300, 1);
    let mut opts: Vec<_> = values
        .iter()
        .map(|v| options(&ws, &ca, "shamir", v))
        .collect();
    opts[3].drop_after_shares = true;
    let results = run_all(opts).await;
    let want = expected(&values, 0, 300, 1, 10);
    for r in &results[..3] {
        let got = result_json(r.as_ref().unwrap());
        assert_stats(&got, &want);
        assert_eq!(got["contributors"], serde_json::json!([1, 2, 3, 4]));
    }
    assert!(matches!(
        results[3].as_ref().unwrap().outcome,
        PatientOutcome::LeftAfterShares { round: 1 }
    ));
    // Additive 3-of-3: one leaving abandons the round, revealing nothing.
    let values = random_values(3, 42, 0, 300, 1);
    let mut opts: Vec<_> = values
        .iter()
        .map(|v| options(&ws, &ca, "additive", v))
        .collect();
    opts[0].drop_after_shares = true;
    let results = run_all(opts).await;
    for r in &results[1..] {
        match r {
            Err(PatientError::Abandoned {
                round: 1, reason, ..
            }) => {
                assert_eq!(
                    *reason,
                    AbandonReason::TooFewPartialSums { got: 2, needed: 3 }
                );
            }
            other => panic!("expected an abandoned round, got {other:?}"),
        }
    }
    let rounds = t
        .get("/api/studies/additive/rounds", Some(TOKEN))
        .await
        .json();
    assert_eq!(rounds[0]["status"], "abandoned");
    assert_eq!(rounds[0]["reason"], "too_few_partial_sums");
    assert_eq!(rounds[0]["count"], serde_json::Value::Null);
    let results = t
        .get("/api/studies/additive/results", Some(TOKEN))
        .await
        .json();
    assert_eq!(results, serde_json::json!([]));
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_errors_are_clear() {
    let t = TestRelay::start(&[
        &study("s", 3, 3, ""),
        &study("secret", 3, 3, ",invite=sesame-123"),
    ])
    .await;
    let (ws, ca) = (t.ws_url(), t.ca());
    let run = |o| async move { cohort_relay::client::run_patient(&o, &mut |_| {}).await };
    match run(options(&ws, &ca, "nope", "170")).await {
        Err(PatientError::Refused { code, message }) => {
            assert_eq!(code, "unknown_study");
            assert_eq!(message, "no such study");
        }
        other => panic!("{other:?}"),
    }
    match run(options(&ws, &ca, "secret", "170")).await {
        Err(PatientError::Refused { code, .. }) => assert_eq!(code, "forbidden"),
        other => panic!("{other:?}"),
    }
    match run(options(&ws, &ca, "s", "300.1")).await {
        Err(e @ PatientError::Value(_)) => assert_eq!(
            e.to_string(),
            "value rejected: outside the study's allowed range"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        run(options(&ws, &ca, "s", "17O")).await,
        Err(PatientError::Value(_))
    ));
    assert!(matches!(
        run(options(&ws, &ca, "s", "170.25")).await,
        Err(PatientError::Value(_))
    ));
    // The refused patients left: nobody is enrolled.
    let status = t.get("/api/studies/s", Some(TOKEN)).await.json();
    assert_eq!(status["enrolled"], 0);
    // An unreachable relay: a port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let url = format!("wss://127.0.0.1:{port}/ws");
    assert!(matches!(
        run(options(&url, &ca, "s", "170")).await,
        Err(PatientError::Unreachable { .. })
    ));
    assert!(matches!(
        run(options("ws://127.0.0.1:1/ws", &ca, "s", "170")).await,
        Err(PatientError::Url(_))
    ));
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_with_the_wrong_ca_refuses_to_connect() {
    let t = TestRelay::start(&[&study("s", 3, 3, "")]).await;
    let other = TmpDir::new("other-ca");
    cohort_relay::certs::load_or_generate(&other.path("certs")).unwrap();
    let wrong_ca = other.path("certs/ca.pem");
    let o = options(&t.ws_url(), &wrong_ca, "s", "170");
    match cohort_relay::client::run_patient(&o, &mut |_| {}).await {
        Err(e @ PatientError::Certificate(_)) => {
            assert!(e.to_string().contains("UnknownIssuer"), "{e}");
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    // The server certificate is for localhost and loopback: the right CA works by name too.
    let by_name = format!("wss://localhost:{}/ws", t.relay.local_addr().port());
    let mut ws = stalling_patient(&by_name, &t.ca(), "s", 1).await;
    wait_for(&mut ws, |m| matches!(m, RelayToPatient::Welcome(_))).await;
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_and_http_rules() {
    let t = TestRelay::start(&[&study("s", 3, 3, "")]).await;
    let r = t.get("/", None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<title>patient</title>"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("'wasm-unsafe-eval'")
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert!(t.get("/?study=s", None).await.body.contains("patient"));
    assert!(
        t.get("/hospital", None)
            .await
            .body
            .contains("<title>hospital</title>")
    );
    let wasm = t.get("/pkg/app.wasm", None).await;
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    assert_eq!(wasm.body.as_bytes(), b"\0asm\x01\0\0\0");
    assert!(
        t.get("/pkg/app.js", None)
            .await
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    for bad in [
        "/../relay.rs",
        "/pkg/../../x",
        "/.hidden",
        "/missing.html",
        "/pkg",
    ] {
        assert_eq!(t.get(bad, None).await.status, 404, "{bad}");
    }
    assert_eq!(t.post("/", None, Some("x")).await.status, 405);
    assert_eq!(t.get("/ws", None).await.status, 426);
    assert_eq!(t.get("/api/nothing", None).await.status, 404);
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_typed_errors_without_echo() {
    use futures_util::SinkExt;
    let t = TestRelay::start(&[&study("s", 3, 3, "")]).await;
    let mut ws = cohort_relay::client::connect(&t.ws_url(), &t.ca())
        .await
        .unwrap();
    let cases = [
        (
            "{\"type\":\"join\",\"v\":3,\"study\":\"s\",\"public_key\":\"172.5\"}",
            "bad_message",
        ),
        ("not json 172.5", "bad_message"),
        (
            "{\"type\":\"partial_sum\",\"v\":3,\"round\":1,\"sum\":[1]}",
            "bad_message",
        ),
    ];
    for (frame, code) in cases {
        ws.send(Message::text(frame)).await.unwrap();
        match wait_for(&mut ws, |_| true).await {
            RelayToPatient::Error(e) => {
                assert_eq!(serde_json::to_value(e.code).unwrap(), code, "{frame}");
                assert!(!e.message.contains("172.5"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert!(matches!(
        wait_for(&mut ws, |_| true).await,
        RelayToPatient::Error(_)
    ));
    // A well-formed partial sum (a binary frame) before joining: refused as out of turn.
    let early =
        cohort_core::message::PatientToRelay::PartialSum(cohort_core::message::PartialSum {
            round: 1,
            sum: vec![cohort_core::field::Fe::ONE],
        });
    ws.send(cohort_relay::ws::to_message(early.encode()))
        .await
        .unwrap();
    match wait_for(&mut ws, |_| true).await {
        RelayToPatient::Error(e) => {
            assert_eq!(serde_json::to_value(e.code).unwrap(), "unexpected")
        }
        other => panic!("{other:?}"),
    }
    // A second join on the same connection is refused; leaving then joining again works.
    let mut p = stalling_patient(&t.ws_url(), &t.ca(), "s", 7).await;
    wait_for(&mut p, |m| matches!(m, RelayToPatient::Welcome(_))).await;
    let again = cohort_core::message::PatientToRelay::Join(cohort_core::message::Join {
        v: cohort_core::message::PROTOCOL_VERSION,
        study: "s".into(),
        commitment: cohort_core::commitment::Commitment([8; 32]),
        invite: None,
    });
    p.send(cohort_relay::ws::to_message(again.encode()))
        .await
        .unwrap();
    match wait_for(&mut p, |m| matches!(m, RelayToPatient::Error(_))).await {
        RelayToPatient::Error(e) => assert_eq!(serde_json::to_value(e.code).unwrap(), "duplicate"),
        _ => unreachable!(),
    }
    let leave = cohort_core::message::PatientToRelay::Leave(cohort_core::message::Leave {
        v: cohort_core::message::PROTOCOL_VERSION,
    });
    p.send(cohort_relay::ws::to_message(leave.encode()))
        .await
        .unwrap();
    p.send(cohort_relay::ws::to_message(again.encode()))
        .await
        .unwrap();
    match wait_for(&mut p, |m| matches!(m, RelayToPatient::Welcome(_))).await {
        RelayToPatient::Welcome(w) => {
            assert_eq!(w.enrolled, 1, "the left patient is no longer enrolled")
        }
        _ => unreachable!(),
    }
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_creates_questionnaire_studies_and_refuses_bad_ones_naming_the_question() {
    let t =
        TestRelay::start_with(&[&study("s", 3, 3, "")], |c| c.max_patients_per_study = 50).await;
    let survey = r#"{"id":"survey","size":5,"threshold":5,"min_cohort":3,"suppress_small_cells":false,
        "questions":[{"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13},
                     {"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"]}]}"#;
    let created = t.post("/api/studies", Some(TOKEN), Some(survey)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let params = &created.json()["params"];
    assert_eq!(params["id"], "survey");
    assert_eq!(params["questions"].as_array().unwrap().len(), 2);
    assert_eq!(params["questions"][1]["options"][2], "used to");
    assert_eq!(params["suppress_small_cells"], false);
    assert_eq!(
        t.post("/api/studies", Some(TOKEN), Some(survey))
            .await
            .status,
        409
    );
    // The text form still works next to it.
    let text = t
        .post(
            "/api/studies",
            Some(TOKEN),
            Some(r#"{"spec":"id=plain,size=3"}"#),
        )
        .await;
    assert_eq!(text.status, 201, "{}", text.body);
    assert!(text.json()["params"].get("questions").is_none());
    assert!(text.json()["params"].get("suppress_small_cells").is_none());

    let refused = |body: String, needle: &'static str| {
        let t = &t;
        async move {
            let r = t.post("/api/studies", Some(TOKEN), Some(&body)).await;
            assert_eq!(r.status, 400, "{body}: {}", r.body);
            let e = r.json()["error"].as_str().unwrap().to_string();
            assert!(e.contains(needle), "{e:?} should name {needle:?}");
        }
    };
    let number = |id: &str, max: u64, decimals: u32, buckets: u32| {
        format!(
            r#"{{"id":"{id}","kind":"number","text":"?","unit":"u","min":0,"max":{max},"decimals":{decimals},"buckets":{buckets}}}"#
        )
    };
    // Five numbers of 1000 buckets: the vector passes 4096 entries at the fifth.
    let long: Vec<String> = (0..5)
        .map(|i| number(&format!("q{i}"), 1000, 0, 1000))
        .collect();
    refused(
        format!(
            r#"{{"id":"long","size":3,"questions":[{}]}}"#,
            long.join(",")
        ),
        "\"q4\"",
    )
    .await;
    // 3 × (10^12)² wraps the field.
    refused(
        format!(
            r#"{{"id":"wide","size":3,"questions":[{},{}]}}"#,
            number("ok", 10, 0, 2),
            number("huge", 1_000_000, 6, 2)
        ),
        "\"huge\"",
    )
    .await;
    refused(r#"{"id":"x","size":3,"colour":"blue"}"#.into(), "`colour`").await;
    refused(
        r#"{"id":"x","size":3,"threshold":9}"#.into(),
        "key `threshold`",
    )
    .await;
    refused(
        format!(
            r#"{{"id":"big","size":60,"threshold":60,"questions":[{}]}}"#,
            number("a", 10, 0, 2)
        ),
        "limit of 50 patients",
    )
    .await;
    refused(r#"[1,2]"#.into(), "JSON").await;
    let list = t.get("/api/studies", Some(TOKEN)).await.json();
    let ids: BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["params"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from(["plain", "s", "survey"]));
    t.relay.shutdown().await;
}
