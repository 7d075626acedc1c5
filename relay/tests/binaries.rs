//! Tests that run the real binaries: `cohort-relay` killed with SIGKILL and restarted on the
//! same data directory, its whole log output checked for secrets, and the `cohort-patient`
//! CLI's output and exit codes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use cohort_core::message::{AbandonReason, PatientToRelay, RelayToPatient, Wire};
use common::*;
use futures_util::SinkExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

const RELAY: &str = env!("CARGO_BIN_EXE_cohort-relay");
const PATIENT: &str = env!("CARGO_BIN_EXE_cohort-patient");

struct RelayProc {
    child: Child,
    stdout: Vec<String>,
    base: String,
    ws: String,
    log: PathBuf,
}

impl RelayProc {
    /// Starts `cohort-relay` on port 0 in `dir` and reads its startup lines.
    async fn spawn(dir: &TmpDir, name: &str, args: &[&str], env: &[(&str, &str)]) -> RelayProc {
        let log = dir.path(&format!("{name}.log"));
        let mut cmd = Command::new(RELAY);
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--web")
            .arg(dir.path("web"))
            .arg("--certs")
            .arg(dir.path("certs"))
            .arg("--data")
            .arg(dir.path("data"))
            .args(args)
            .env_remove("COHORT_ADMIN_TOKEN")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The contract's three lines, then optional ones; with a CA in the certs directory
        // (always, here) the last startup line is "CA certificate: ...".
        let mut stdout = Vec::new();
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let last = line.starts_with("CA certificate: ");
                stdout.push(line);
                if last {
                    break;
                }
            }
        };
        tokio::time::timeout(LIMIT, read)
            .await
            .expect("startup lines");
        assert!(
            stdout.len() >= 4,
            "relay exited: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        // Keep draining stdout so the relay never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let base = stdout[0]
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_string();
        let port = base.rsplit(':').next().unwrap();
        let ws = format!("wss://127.0.0.1:{port}/ws");
        RelayProc {
            child,
            stdout,
            base,
            ws,
            log,
        }
    }

    async fn get(&self, ca: &Path, path: &str, token: &str) -> serde_json::Value {
        let r = https(&self.base, ca, "GET", path, Some(token), None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

async fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    run_program(PATIENT, args).await
}

async fn run_program(program: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        LIMIT,
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the process finished in time")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const HEIGHT: &str = "id=height,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10";

/// Runs the questionnaire round of [`survey`] with five `cohort-patient` processes on the
/// relay's "survey" study; checks every stdout line against plain arithmetic and returns them.
async fn run_survey(relay: &RelayProc, ca: &Path) -> Vec<serde_json::Value> {
    let runs: Vec<_> = survey::ANSWERS
        .iter()
        .map(|a| {
            let mut args: Vec<String> = [
                "--relay",
                &relay.ws,
                "--ca",
                ca.to_str().unwrap(),
                "--study",
                "survey",
            ]
            .map(String::from)
            .to_vec();
            args.extend(survey::cli_args(a));
            tokio::spawn(async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run_cli(&args).await
            })
        })
        .collect();
    let mut lines = Vec::new();
    for (run, a) in runs.into_iter().zip(survey::ANSWERS) {
        let (status, stdout, stderr) = run.await.unwrap();
        assert_eq!(status, Some(0), "{stderr}");
        let last = stdout.lines().last().expect("a result line");
        let v: serde_json::Value = serde_json::from_str(last).unwrap();
        survey::assert_survey(&v);
        // Options in the question's order (serde_json's Value would sort them).
        assert!(
            last.contains(r#""counts":{"no":2,"yes":2,"used to":1}"#),
            "{last}"
        );
        assert_eq!(v["checked_on_device"], true);
        assert_eq!(v["roster_size"], 5);
        assert!(
            v.get("sum").is_none() && v.get("histogram").is_none(),
            "{v}"
        );
        let sc = v["safety_code"].as_str().unwrap();
        assert!(stderr.contains(&format!("safety code: {sc}")), "{stderr}");
        for answer in [format!("height={}", a.0), format!("smoker={}", a.2)] {
            assert!(!stderr.contains(&answer), "{answer} in {stderr}");
        }
        lines.push(v);
    }
    for v in &lines {
        assert_eq!(v, &lines[0], "every patient sees the same result");
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_survive_sigkill_and_in_flight_rounds_are_abandoned() {
    let dir = TmpDir::new("restart");
    let ca = dir.path("certs/ca.pem");
    let env = [("COHORT_ADMIN_TOKEN", TOKEN)];
    let survey_file = dir.path("survey.json");
    std::fs::write(&survey_file, survey::SURVEY_JSON).unwrap();
    let args = [
        "--study",
        HEIGHT,
        "--study-file",
        survey_file.to_str().unwrap(),
    ];
    let mut relay = RelayProc::spawn(&dir, "first", &args, &env).await;
    let port = relay.base.rsplit(':').next().unwrap().to_string();
    assert_eq!(
        relay.stdout[0],
        format!("listening on https://127.0.0.1:{port}")
    );
    assert_eq!(
        relay.stdout[1],
        format!("patient page: https://127.0.0.1:{port}/?study=height")
    );
    assert_eq!(
        relay.stdout[2],
        format!("dashboard: https://127.0.0.1:{port}/hospital")
    );

    // Round 1 with three cohort-patient processes.
    let values = random_values(3, 51, 0, 300, 1);
    let runs: Vec<_> = values
        .iter()
        .map(|v| {
            let args = [
                "--relay",
                &relay.ws,
                "--ca",
                ca.to_str().unwrap(),
                "--study",
                "height",
                "--value",
                v,
            ]
            .map(String::from);
            tokio::spawn(async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run_cli(&args).await
            })
        })
        .collect();
    let want = expected(&values, 0, 300, 1, 10);
    let mut code = None;
    for run in runs {
        let (status, stdout, stderr) = run.await.unwrap();
        assert_eq!(status, Some(0), "{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one JSON line: {stdout}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_stats(&v, &want);
        assert_eq!(v["study"], "height");
        assert_eq!(v["round"], 1);
        assert_eq!(v["roster_size"], 3);
        assert_eq!(v["contributors"], serde_json::json!([1, 2, 3]));
        assert!(v["mean"].is_f64() && v["count"].is_u64());
        let sc = v["safety_code"].as_str().unwrap().to_string();
        assert!(stderr.contains(&format!("safety code: {sc}")), "{stderr}");
        assert!(
            code.get_or_insert(sc.clone()) == &sc,
            "same safety code for all"
        );
        for value in &values {
            assert!(!stderr.contains(value.as_str()) && !stdout.contains(value.as_str()));
        }
    }
    let before = relay.get(&ca, "/api/studies/height/results", TOKEN).await;
    assert_eq!(before.as_array().unwrap().len(), 1);
    assert_stats(&before[0], &want);
    // A questionnaire round next to it.
    run_survey(&relay, &ca).await;
    let survey_before = relay.get(&ca, "/api/studies/survey/results", TOKEN).await;
    assert_eq!(survey_before.as_array().unwrap().len(), 1);
    survey::assert_survey(&survey_before[0]);

    // Round 2 in flight: three patients hold a roster and never send shares.
    let mut stalled = Vec::new();
    for i in 0..3 {
        stalled.push(stalling_patient(&relay.ws, &ca, "height", 100 + i).await);
    }
    for ws in &mut stalled {
        match wait_for(ws, |m| matches!(m, RelayToPatient::Roster(_))).await {
            RelayToPatient::Roster(r) => assert_eq!(r.roster.round, 2),
            _ => unreachable!(),
        }
    }
    let ca_pem = std::fs::read(&ca).unwrap();
    relay.child.kill().await.unwrap(); // SIGKILL
    drop(stalled);

    let mut relay = RelayProc::spawn(&dir, "second", &args, &env).await;
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        ca_pem,
        "certificates are reused"
    );
    let after = relay.get(&ca, "/api/studies/height/results", TOKEN).await;
    assert_eq!(after, before, "results survive SIGKILL");
    let survey_after = relay.get(&ca, "/api/studies/survey/results", TOKEN).await;
    assert_eq!(
        survey_after, survey_before,
        "questionnaire results survive SIGKILL"
    );
    let rounds = relay.get(&ca, "/api/studies/height/rounds", TOKEN).await;
    assert_eq!(rounds.as_array().unwrap().len(), 2, "{rounds}");
    assert_eq!(rounds[0]["status"], "completed");
    assert_eq!(rounds[1]["round"], 2);
    assert_eq!(rounds[1]["status"], "abandoned");
    assert_eq!(rounds[1]["reason"], "relay_restarted");
    assert_eq!(rounds[1]["count"], serde_json::Value::Null);
    let status = relay.get(&ca, "/api/studies/height", TOKEN).await;
    assert_eq!(status["enrolling_round"], 3, "round ids never repeat");
    assert_eq!(status["completed_rounds"], 1);
    let log = relay.log_text();
    assert!(log.contains("relay_restarted"), "{log}");

    // The restarted relay runs round 3.
    let values3 = random_values(3, 52, 0, 300, 1);
    let reports = run_patients(&relay.ws, &ca, "height", &values3).await;
    let r3 = result_json(&reports[0]);
    assert_eq!(r3["round"], 3);
    assert_stats(&r3, &expected(&values3, 0, 300, 1, 10));

    // A graceful stop (SIGTERM) abandons the running round with reason `shutdown`.
    let mut stalled = Vec::new();
    for i in 0..3 {
        stalled.push(stalling_patient(&relay.ws, &ca, "height", 200 + i).await);
    }
    for ws in &mut stalled {
        wait_for(ws, |m| matches!(m, RelayToPatient::Roster(_))).await;
    }
    let pid = relay.child.id().unwrap().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    for ws in &mut stalled {
        match wait_for(ws, |m| matches!(m, RelayToPatient::Abandoned(_))).await {
            RelayToPatient::Abandoned(a) => {
                assert_eq!(a.round, 4);
                assert_eq!(a.reason, AbandonReason::Shutdown);
            }
            _ => unreachable!(),
        }
    }
    let exit = tokio::time::timeout(LIMIT, relay.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    drop(stalled);

    let mut relay = RelayProc::spawn(&dir, "third", &[], &env).await;
    assert!(
        relay.stdout[1].ends_with("/?study=height"),
        "stored study restored without --study"
    );
    let rounds = relay.get(&ca, "/api/studies/height/rounds", TOKEN).await;
    let summary: Vec<(u64, String, Option<String>)> = rounds
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["round"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
                r["reason"].as_str().map(String::from),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "completed".into(), None),
            (2, "abandoned".into(), Some("relay_restarted".into())),
            (3, "completed".into(), None),
            (4, "abandoned".into(), Some("shutdown".into())),
        ]
    );
    let results = relay.get(&ca, "/api/studies/height/results", TOKEN).await;
    assert_eq!(results.as_array().unwrap().len(), 2);
    assert_eq!(results[0], before[0]);
    let survey_third = relay.get(&ca, "/api/studies/survey/results", TOKEN).await;
    assert_eq!(survey_third, survey_before, "and a graceful restart");
    relay.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questionnaire_round_of_five_cli_patients_matches_plain_arithmetic_in_api_and_csv() {
    let dir = TmpDir::new("survey");
    let ca = dir.path("certs/ca.pem");
    let file = dir.path("survey.json");
    std::fs::write(&file, survey::SURVEY_JSON).unwrap();
    let env = [("COHORT_ADMIN_TOKEN", TOKEN)];
    let mut relay = RelayProc::spawn(
        &dir,
        "relay",
        &["--study-file", file.to_str().unwrap()],
        &env,
    )
    .await;
    assert!(
        relay.stdout[1].ends_with("/?study=survey"),
        "{:?}",
        relay.stdout
    );
    let lines = run_survey(&relay, &ca).await;

    // The API's result row is the CLI line's object plus the hospital's fields.
    let rows = relay.get(&ca, "/api/studies/survey/results", TOKEN).await;
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    let row = &rows[0];
    survey::assert_survey(row);
    for k in [
        "study",
        "round",
        "count",
        "questions",
        "pairs",
        "by_option",
        "safety_code",
        "roster_size",
        "contributors",
        "partial_sums",
    ] {
        assert_eq!(row[k], lines[0][k], "{k}");
    }
    assert_eq!(row["threshold"], 5);
    assert!(row.get("questionnaire").is_none() && row.get("sum").is_none());
    let rounds = relay.get(&ca, "/api/studies/survey/rounds", TOKEN).await;
    assert_eq!(rounds[0]["status"], "completed");
    assert_eq!(rounds[0]["questions"], row["questions"]);
    assert_eq!(rounds[0]["sum"], serde_json::Value::Null);

    // The CSV export: one row per round and statistic.
    let r = https(
        &relay.base,
        &ca,
        "GET",
        "/api/studies/survey/results.csv",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let mut reader = csv::Reader::from_reader(r.body.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
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
    let round = row["round"].to_string();
    let finished = row["finished_at_ms"].to_string();
    for rec in &records {
        assert_eq!(
            (&rec[0], &rec[1], &rec[2]),
            ("survey", round.as_str(), finished.as_str())
        );
    }
    let value = |q: &str, with: &str, option: &str, bucket: &str, stat: &str| -> String {
        let hits: Vec<_> = records
            .iter()
            .filter(|r| (&r[3], &r[4], &r[5], &r[6], &r[7]) == (q, with, option, bucket, stat))
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "{q} {with} {option} {bucket} {stat}: {}",
            r.body
        );
        hits[0][8].to_string()
    };
    let num = |s: String| -> f64 { s.parse().unwrap() };
    let w = survey::want();
    assert_eq!(value("", "", "", "", "count"), "5");
    assert_eq!(
        value("", "", "", "", "safety_code"),
        lines[0]["safety_code"].as_str().unwrap()
    );
    for (id, n, lo, width) in [
        ("height", &w.height, 100.0, 10.0),
        ("weight", &w.weight, 30.0, 10.0),
    ] {
        assert_eq!(value(id, "", "", "", "count"), n.count.to_string());
        survey::close(num(value(id, "", "", "", "sum")), n.sum, "csv sum");
        survey::close(num(value(id, "", "", "", "mean")), n.mean, "csv mean");
        survey::close(num(value(id, "", "", "", "stddev")), n.stddev, "csv stddev");
        let last = n.histogram.len() - 1;
        for (b, c) in n.histogram.iter().enumerate() {
            let (a, z) = (lo + width * b as f64, lo + width * (b + 1) as f64);
            let bucket = if b == last {
                format!("[{a}, {z}]")
            } else {
                format!("[{a}, {z})")
            };
            assert_eq!(
                value(id, "", "", &bucket, "histogram"),
                c.to_string(),
                "{id} {bucket}"
            );
        }
    }
    assert_eq!(value("smoker", "", "", "", "count"), "5");
    for (label, n) in &w.smoker {
        assert_eq!(
            value("smoker", "", label, "", "option_count"),
            n.to_string()
        );
    }
    assert_eq!(value("height", "weight", "", "", "n"), w.pair.n.to_string());
    survey::close(
        num(value("height", "weight", "", "", "mean_x")),
        w.pair.mean_x,
        "csv mean_x",
    );
    survey::close(
        num(value("height", "weight", "", "", "mean_y")),
        w.pair.mean_y,
        "csv mean_y",
    );
    survey::close(
        num(value("height", "weight", "", "", "r")),
        w.pair.r,
        "csv r",
    );
    survey::close(
        num(value("height", "weight", "", "", "slope")),
        w.pair.slope,
        "csv slope",
    );
    survey::close(
        num(value("height", "weight", "", "", "intercept")),
        w.pair.intercept,
        "csv intercept",
    );
    for (choice, number, option, n, mean) in &w.by_option {
        assert_eq!(value(number, choice, option, "", "n"), n.to_string());
        let got = value(number, choice, option, "", "mean");
        match mean {
            Some(m) => survey::close(num(got), *m, "csv by_option mean"),
            None => assert_eq!(got, "", "a null mean is an empty value"),
        }
    }
    // Needles that cannot occur by chance (a bare "181" could be part of a timestamp or a
    // port): the height with its decimal, and the answer as the patient typed it.
    let log = relay.log_text();
    for a in survey::ANSWERS {
        for needle in [format!("{:.1}", a.0), format!("height={}", a.0)] {
            assert!(!log.contains(&needle), "a height in the log: {needle}");
        }
    }
    relay.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_study_file_is_refused_at_start_naming_the_file_and_the_key() {
    let dir = TmpDir::new("badfile");
    let cases = [
        (r#"{"id":"x","size":3,"colour":"blue"}"#, "key `colour`"),
        (r#"{"id":"x","size":3,"size":4}"#, "key `size`"),
        (r#"{"id":"x","size":3,"threshold":9}"#, "key `threshold`"),
        (
            r#"{"id":"x","size":3,"questions":[
              {"id":"h","kind":"number","text":"?","unit":"cm","min":200,"max":100,"decimals":0,"buckets":2}]}"#,
            "key `questions`",
        ),
        (
            r#"{"id":"x","size":3,"questions":[
              {"id":"h","kind":"choice","text":"?","options":["a","b"]},
              {"id":"h","kind":"choice","text":"?","options":["a","b"]}]}"#,
            "\"h\"",
        ),
    ];
    for (i, (json, needle)) in cases.iter().enumerate() {
        let file = dir.path(&format!("bad-{i}.json"));
        std::fs::write(&file, json).unwrap();
        let out = tokio::time::timeout(
            LIMIT,
            Command::new(RELAY)
                .args(["--listen", "127.0.0.1:0", "--web"])
                .arg(dir.path("web"))
                .arg("--certs")
                .arg(dir.path("certs"))
                .arg("--data")
                .arg(dir.path("data"))
                .arg("--study-file")
                .arg(&file)
                .env("COHORT_ADMIN_TOKEN", TOKEN)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("refused at once")
        .unwrap();
        let stderr = String::from_utf8(out.stdout.clone()).unwrap()
            + &String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success(), "{json}: started");
        assert!(
            stderr.contains(&format!("study file {}", file.display())),
            "{stderr}"
        );
        assert!(stderr.contains(needle), "{needle} not in {stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
    }
    // A file that cannot be read names the file too.
    let missing = dir.path("missing.json");
    let out = Command::new(RELAY)
        .arg("--study-file")
        .arg(&missing)
        .arg("--data")
        .arg(dir.path("data"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("study file {}: cannot read", missing.display())),
        "{stderr}"
    );
}

/// Every text form a value could leak in: as typed, trimmed, in fixed point, squared.
fn value_needles(v: &str, decimals: u32) -> Vec<String> {
    let x = scaled(v, decimals);
    let mut out = vec![
        v.to_string(),
        v.trim_end_matches('0').trim_end_matches('.').to_string(),
        x.to_string(),
        (i128::from(x) * i128::from(x)).to_string(),
    ];
    out.push(format!("{}", v.parse::<f64>().unwrap()));
    out
}

/// What the relay saw from a patient that must never reach a log: public keys, sealed shares
/// (and their prefixes) and partial sums.
fn frame_needles(frames: &[Wire]) -> Vec<String> {
    let mut out = Vec::new();
    for f in frames {
        match PatientToRelay::decode_wire(f).unwrap() {
            PatientToRelay::Join(j) => {
                let c = serde_json::to_value(j.commitment).unwrap();
                out.push(c.as_str().unwrap().to_string());
            }
            PatientToRelay::Reveal(r) => {
                let key = serde_json::to_value(r.public_key).unwrap();
                out.push(key.as_str().unwrap().to_string());
            }
            PatientToRelay::Shares(s) => {
                // Sealed shares travel as raw bytes; a log could only show them as text,
                // base64url or hex.
                for (_, sealed) in s.shares.iter() {
                    let text = cohort_core::b64::encode(sealed);
                    assert!(text.len() > 40);
                    out.push(text[..24].to_string());
                    out.push(text[text.len() - 24..].to_string());
                    out.push(text);
                    let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
                    out.push(hex[..24].to_string());
                    out.push(hex);
                }
            }
            PatientToRelay::PartialSum(p) => {
                for fe in p.sum {
                    if fe.value() >= 1_000_000 {
                        out.push(fe.value().to_string());
                    }
                }
            }
            PatientToRelay::Verify(v) => {
                for (_, sealed) in v.checks.iter() {
                    out.push(cohort_core::b64::encode(sealed));
                }
            }
            PatientToRelay::Verdict(v) => {
                for (_, tag) in v.tags.iter() {
                    out.push(cohort_core::b64::encode(tag));
                    out.push(tag.iter().map(|b| format!("{b:02x}")).collect());
                }
            }
            PatientToRelay::Leave(_) => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_log_contains_no_values_shares_partial_sums_or_token() {
    let dir = TmpDir::new("logs");
    let ca = dir.path("certs/ca.pem");
    let spec = "id=logs,size=4,threshold=3,min=0,max=300,decimals=3,buckets=10";
    // Everything at trace, so even the most verbose output is checked.
    let mut relay =
        RelayProc::spawn(&dir, "relay", &["--study", spec], &[("RUST_LOG", "trace")]).await;

    // No token given: one is generated, printed once on stdout and stored 0600.
    let token_line = relay
        .stdout
        .iter()
        .find(|l| l.starts_with("admin token: "))
        .unwrap_or_else(|| panic!("token line in {:?}", relay.stdout))
        .clone();
    let token = token_line["admin token: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 64);
    let stored = std::fs::read_to_string(dir.path("data/admin-token")).unwrap();
    assert_eq!(stored.trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["data/admin-token", "certs/key.pem", "certs/ca-key.pem"] {
            let mode = std::fs::metadata(dir.path(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    // Values with six significant digits, so their text forms cannot occur by chance.
    let values = random_values(4, 61, 100, 299, 3);
    let opts = values
        .iter()
        .map(|v| {
            let mut o = options(&relay.ws, &ca, "logs", v);
            o.record_frames = true;
            o
        })
        .collect();
    let reports: Vec<_> = run_all(opts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let want = expected(&values, 0, 300, 3, 10);
    for r in &reports {
        assert_stats(&result_json(r), &want);
    }
    // A malformed frame carrying a value-like payload must not be echoed into the log.
    let mut raw = cohort_relay::client::connect(&relay.ws, &ca).await.unwrap();
    raw.send(Message::text(
        r#"{"type":"join","v":3,"study":"leak-987.654","public_key":"zz"}"#,
    ))
    .await
    .unwrap();
    wait_for(&mut raw, |m| matches!(m, RelayToPatient::Error(_))).await;
    let results = relay.get(&ca, "/api/studies/logs/results", &token).await;
    assert_eq!(results.as_array().unwrap().len(), 1);
    drop(raw);
    relay.child.kill().await.unwrap();

    let log = relay.log_text();
    let stdout = relay.stdout.join("\n");
    assert!(log.contains("round completed"), "the round is in the log");
    assert!(log.contains("DEBUG"), "debug-level output was captured");
    assert!(log.contains("undecodable message"));
    let mut needles: Vec<String> = values.iter().flat_map(|v| value_needles(v, 3)).collect();
    for r in &reports {
        let frames = frame_needles(&r.sent_frames);
        assert!(
            frames.len() >= 4 + 3 * 3,
            "join key, sealed shares, partial sums recorded"
        );
        needles.extend(frames);
    }
    needles.push("987.654".into());
    for n in &needles {
        assert!(!log.contains(n.as_str()), "log contains {n}");
        assert!(!stdout.contains(n.as_str()), "stdout contains {n}");
    }
    assert!(!log.contains(&token), "the admin token is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_cli_errors_and_help() {
    let t = TestRelay::start(&[HEIGHT]).await;
    let ws = t.ws_url();
    let ca = t.ca();
    let ca = ca.to_str().unwrap();
    let other = TmpDir::new("cli-other-ca");
    cohort_relay::certs::load_or_generate(&other.path("certs")).unwrap();
    let wrong_ca = other.path("certs/ca.pem");
    let wrong_ca = wrong_ca.to_str().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("wss://127.0.0.1:{}/ws", free.local_addr().unwrap().port());
    drop(free);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec![
                "--relay", &ws, "--ca", ca, "--study", "nope", "--value", "170",
            ],
            3,
            "no such study",
        ),
        (
            vec![
                "--relay", &ws, "--ca", ca, "--study", "height", "--value", "300.1",
            ],
            4,
            "outside the study's allowed range",
        ),
        (
            vec![
                "--relay", &ws, "--ca", ca, "--study", "height", "--value", "tall",
            ],
            4,
            "not a number",
        ),
        (
            vec![
                "--relay", &ws, "--ca", wrong_ca, "--study", "height", "--value", "170",
            ],
            6,
            "certificate was not accepted",
        ),
        (
            vec![
                "--relay", &dead, "--ca", ca, "--study", "height", "--value", "170",
            ],
            6,
            "cannot reach the relay",
        ),
        (
            vec![
                "--relay",
                "ws://127.0.0.1:1/ws",
                "--ca",
                ca,
                "--study",
                "height",
                "--value",
                "170",
            ],
            6,
            "wss://",
        ),
    ];
    for (args, code, msg) in cases {
        let (status, stdout, stderr) = run_cli(&args).await;
        assert_eq!(status, Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(msg), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    let (status, help, _) = run_cli(&["--help"]).await;
    assert_eq!(status, Some(0));
    for flag in [
        "--relay",
        "--ca",
        "--study",
        "--value",
        "--invite",
        "--drop-after-shares",
        "--timeout-s",
    ] {
        assert!(help.contains(flag), "cohort-patient --help lacks {flag}");
    }
    let out = Command::new(RELAY).arg("--help").output().await.unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    for flag in [
        "--listen",
        "--web",
        "--certs",
        "--data",
        "--study",
        "--admin-token",
        "COHORT_ADMIN_TOKEN",
        "--max-message-bytes",
        "--max-connections",
    ] {
        assert!(help.contains(flag), "cohort-relay --help lacks {flag}");
    }
    let bad = Command::new(RELAY)
        .args(["--study", "id=Bad"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8(bad.stderr)
            .unwrap()
            .contains("study id must be")
    );
    t.relay.shutdown().await;
}

/// Runs one `cohort-patient` process per value against `ws` (study `study`); the patients at
/// the indices in `drop` leave right after sending their shares. Returns (exit code, stdout,
/// stderr) in input order.
async fn cli_round(
    ws: &str,
    ca: &Path,
    study: &str,
    values: &[String],
    drop: &[usize],
    invite: Option<&str>,
) -> Vec<(Option<i32>, String, String)> {
    let runs: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut args: Vec<String> = [
                "--relay",
                ws,
                "--ca",
                ca.to_str().unwrap(),
                "--study",
                study,
                "--value",
                v,
                "--timeout-s",
                "30",
            ]
            .map(String::from)
            .to_vec();
            if drop.contains(&i) {
                args.push("--drop-after-shares".into());
            }
            if let Some(code) = invite {
                args.extend(["--invite".into(), code.into()]);
            }
            tokio::spawn(async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run_cli(&args).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for r in runs {
        out.push(r.await.unwrap());
    }
    out
}

// Dropout tolerance as without validity proofs: with proofs a patient that leaves after its
// shares is no contributor, and its checkee's proof goes unchecked (PROTOCOL.md, "The round
// with proofs"; core/tests/sim.rs covers both).
const FIVE: &str = "id=five,size=5,threshold=3,min=0,max=300,decimals=1,buckets=10,proofs=off";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_dropouts_within_tolerance_complete_beyond_it_abandon_and_the_study_reenrols() {
    let t = TestRelay::start(&[FIVE]).await;
    let (ws, ca) = (t.ws_url(), t.ca());
    let mut dash = dashboard(&ws, &ca, TOKEN).await;

    // Round 1: size 5, threshold 3; two patients leave after sharing. The other three get
    // the exact statistics of all five.
    let values = random_values(5, 701, 0, 300, 1);
    let runs = cli_round(&ws, &ca, "five", &values, &[1, 3], None).await;
    let want = expected(&values, 0, 300, 1, 10);
    for (i, (code, stdout, stderr)) in runs.iter().enumerate() {
        assert_eq!(*code, Some(0), "patient {i}: {stderr}");
        if i == 1 || i == 3 {
            assert!(stdout.is_empty(), "a leaver prints no result: {stdout}");
            assert!(stderr.contains("after sending the shares"), "{stderr}");
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_stats(&v, &want);
        assert_eq!(v["round"], 1);
        assert_eq!(v["contributors"], serde_json::json!([1, 2, 3, 4, 5]));
    }
    let done = wait_feed(&mut dash, |v| {
        v["type"] == "status" && v["ended"].is_object()
    })
    .await;
    assert_eq!(done["ended"]["status"], "completed");
    assert_stats(&done["ended"], &want);

    // Round 2: three leave after sharing, so only two partial sums can come: abandoned, with
    // the reason at every remaining patient and on the dashboard; nothing revealed.
    let values2 = random_values(5, 702, 0, 300, 1);
    let runs = cli_round(&ws, &ca, "five", &values2, &[0, 2, 4], None).await;
    for i in [1, 3] {
        let (code, stdout, stderr) = &runs[i];
        assert_eq!(*code, Some(5), "patient {i}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("round 2 was abandoned"), "{stderr}");
        assert!(
            stderr.contains("partial sums"),
            "the reason in words: {stderr}"
        );
    }
    let ab = wait_feed(&mut dash, |v| v["ended"]["status"] == "abandoned").await;
    assert_eq!(ab["ended"]["round"], 2);
    assert_eq!(ab["ended"]["reason"], "too_few_partial_sums");
    assert_eq!(
        ab["ended"]["count"],
        serde_json::Value::Null,
        "nothing revealed"
    );
    assert_eq!(ab["study"]["running"], serde_json::Value::Null);
    let rounds = t.get("/api/studies/five/rounds", Some(TOKEN)).await.json();
    assert_eq!(rounds[1]["status"], "abandoned");
    assert_eq!(rounds[1]["count"], serde_json::Value::Null);

    // Round 3 of the same study: everyone stays; exact.
    let values3 = random_values(5, 703, 0, 300, 1);
    let runs = cli_round(&ws, &ca, "five", &values3, &[], None).await;
    let want3 = expected(&values3, 0, 300, 1, 10);
    for (code, stdout, stderr) in &runs {
        assert_eq!(*code, Some(0), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_stats(&v, &want3);
        assert_eq!(v["round"], 3);
    }
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_without_shares_by_the_deadline_is_left_out() {
    let t = TestRelay::start(&[
        // Without proofs: with them, the stalled member's checkee could not be checked.
        "id=late,size=4,threshold=3,min=0,max=300,decimals=1,buckets=10,shares_s=1,partials_s=5,proofs=off",
    ])
    .await;
    let (ws, ca) = (t.ws_url(), t.ca());
    // One patient joins and never sends its shares.
    let mut stalled = stalling_patient(&ws, &ca, "late", 711).await;
    wait_for(&mut stalled, |m| matches!(m, RelayToPatient::Welcome(_))).await;
    let values = random_values(3, 712, 0, 300, 1);
    let runs = cli_round(&ws, &ca, "late", &values, &[], None).await;
    let want = expected(&values, 0, 300, 1, 10);
    for (code, stdout, stderr) in &runs {
        assert_eq!(*code, Some(0), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_stats(&v, &want);
        assert_eq!(v["roster_size"], 4);
        assert_eq!(v["contributors"].as_array().unwrap().len(), 3);
    }
    drop(stalled);
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_codes_through_the_api_and_the_cli() {
    let t = TestRelay::start(&[]).await;
    let (ws, ca) = (t.ws_url(), t.ca());
    let spec = r#"{"spec":"id=club,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10,invite=open-sesame-42"}"#;
    let created = t.post("/api/studies", Some(TOKEN), Some(spec)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["invite_required"], true);
    assert!(
        !created.body.contains("open-sesame-42"),
        "the code is not echoed"
    );
    let public = t.get("/api/public/studies", None).await;
    assert!(!public.body.contains("open-sesame-42"));
    // Without a code, or with a wrong one: refused (exit 3), nobody enrolled.
    for invite in [None, Some("open-sesame-41")] {
        let runs = cli_round(&ws, &ca, "club", &["170.0".to_string()], &[], invite).await;
        let (code, _, stderr) = &runs[0];
        assert_eq!(*code, Some(3), "{stderr}");
        assert!(stderr.contains("forbidden"), "{stderr}");
    }
    let status = t.get("/api/studies/club", Some(TOKEN)).await.json();
    assert_eq!(status["enrolled"], 0);
    // With the code: a normal round.
    let values = random_values(3, 721, 0, 300, 1);
    let runs = cli_round(&ws, &ca, "club", &values, &[], Some("open-sesame-42")).await;
    let want = expected(&values, 0, 300, 1, 10);
    for (code, stdout, stderr) in &runs {
        assert_eq!(*code, Some(0), "{stderr}");
        assert_stats(&serde_json::from_str(stdout.trim()).unwrap(), &want);
    }
    t.relay.shutdown().await;
}

/// Each class of bad input gives exactly one log line at the default level, without the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_gives_one_log_line() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TmpDir::new("badlog");
    let env = [("COHORT_ADMIN_TOKEN", TOKEN)];
    let mut relay = RelayProc::spawn(&dir, "relay", &["--study", HEIGHT], &env).await;
    let port: u16 = relay.base.rsplit(':').next().unwrap().parse().unwrap();
    let ca = dir.path("certs/ca.pem");
    let raw = |bytes: &'static [u8]| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut out)).await;
        out
    };
    raw(b"GET /secret-path-xyz HTTP/1.1\r\n\r\n").await;
    raw(b"\x00garbage-xyz").await;
    let r = https(&relay.base, &ca, "BREW", "/ /secret-xyz", None, None).await;
    assert_eq!(r.status, 400);
    let mut ws = cohort_relay::client::connect(&relay.ws, &ca).await.unwrap();
    for _ in 0..3 {
        ws.send(Message::text("not json secret-xyz")).await.unwrap();
        let _ = wait_for(&mut ws, |_| true).await;
    }
    drop(ws);
    let pid = relay.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(LIMIT, relay.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
    let log = relay.log_text();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("plain HTTP on the TLS port"), 1, "{log}");
    assert_eq!(count("not TLS; closing"), 1, "{log}");
    assert_eq!(count("malformed HTTP request"), 1, "{log}");
    assert_eq!(
        count("undecodable message"),
        1,
        "first at warn, the rest at debug: {log}"
    );
    assert!(!log.contains("xyz"), "no input in the log: {log}");
}

/// A patient with modified code (`cohort-forger`, feature `forge`) beside honest `cohort-patient`
/// processes, through the real relay over WSS: its invalid vector is caught by the honest
/// patients' checks, it is left out, and the honest result is exact; in an additive round the
/// round stops instead and nothing is revealed.
#[cfg(feature = "forge")]
mod forging {
    use super::*;

    const FORGER: &str = env!("CARGO_BIN_EXE_cohort-forger");
    const SHAMIR: &str =
        "id=forge,size=5,threshold=3,min_cohort=3,min=0,max=300,decimals=1,buckets=10";
    const ADDITIVE: &str =
        "id=forge3,size=3,threshold=3,min_cohort=3,min=0,max=300,decimals=1,buckets=10";

    fn forger(
        ws: &str,
        ca: &Path,
        study: &str,
        kind: &str,
    ) -> tokio::task::JoinHandle<(Option<i32>, String, String)> {
        let args: Vec<String> = [
            "--relay",
            ws,
            "--ca",
            ca.to_str().unwrap(),
            "--study",
            study,
            "--value",
            "150.0",
            "--forge",
            kind,
            "--timeout-s",
            "30",
        ]
        .map(String::from)
        .to_vec();
        tokio::spawn(async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_program(FORGER, &args).await
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forgers_are_left_out_and_the_honest_result_is_exact() {
        let t = TestRelay::start(&[SHAMIR, ADDITIVE]).await;
        let (ws, ca) = (t.ws_url(), t.ca());
        let mut dash = dashboard(&ws, &ca, TOKEN).await;
        // Four invalid vectors, and a valid one dealt as Shamir shares off one polynomial.
        let kinds = [
            "out-of-range",
            "bad-square",
            "two-buckets",
            "count",
            "inconsistent-shares",
        ];
        for (round, kind) in kinds.into_iter().enumerate() {
            let values = random_values(4, 900 + round as u64, 0, 300, 1);
            let f = forger(&ws, &ca, "forge", kind);
            let runs = cli_round(&ws, &ca, "forge", &values, &[], None).await;
            let (fcode, fout, ferr) = f.await.unwrap();
            let want = expected(&values, 0, 300, 1, 10);
            let mut forger_index = None;
            for (code, stdout, stderr) in &runs {
                assert_eq!(*code, Some(0), "{kind}: {stderr}");
                let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
                assert_stats(&v, &want);
                assert_eq!(v["contributors"].as_array().unwrap().len(), 4, "{kind}");
                let excluded = v["excluded"].as_array().expect("exclusions listed");
                assert_eq!(excluded.len(), 1, "{kind}: {v}");
                assert_eq!(excluded[0]["reason"], "invalid_proof", "{kind}");
                let index = excluded[0]["index"].as_u64().unwrap();
                assert!(forger_index.is_none_or(|i| i == index), "one forger");
                forger_index = Some(index);
                assert!(
                    !v["contributors"]
                        .as_array()
                        .unwrap()
                        .contains(&index.into())
                );
            }
            // The forger itself checked the others honestly and sees its own exclusion.
            assert_eq!(fcode, Some(0), "{kind}: {ferr}");
            assert!(
                ferr.contains(&format!(
                    "excluded: #{} (invalid_proof)",
                    forger_index.unwrap()
                )),
                "{ferr}"
            );
            let fv: serde_json::Value = serde_json::from_str(fout.trim()).unwrap();
            assert_stats(&fv, &want);
            // The dashboard sees the round end with the exclusion.
            let done = wait_feed(&mut dash, |v| {
                v["study"]["params"]["id"] == "forge" && v["ended"]["round"] == round as u64 + 1
            })
            .await;
            assert_eq!(done["ended"]["status"], "completed");
            assert_eq!(done["ended"]["excluded"][0]["index"], forger_index.unwrap());
            assert_eq!(done["ended"]["excluded"][0]["reason"], "invalid_proof");
        }

        // The stored results name the excluded member of every round.
        let results = t
            .get("/api/studies/forge/results", Some(TOKEN))
            .await
            .json();
        let rows = results.as_array().expect("rows");
        assert_eq!(rows.len(), kinds.len());
        for row in rows {
            assert_eq!(row["excluded"][0]["reason"], "invalid_proof", "{row}");
            assert_eq!(row["count"], 4);
        }

        // Additive: the forgery stops the round; the honest patients are told why. An invalid
        // vector, then a valid one whose leader gets a correction that moves it.
        for (round, kind) in ["bad-square", "bad-correction"].into_iter().enumerate() {
            let values = random_values(2, 950 + round as u64, 0, 300, 1);
            let f = forger(&ws, &ca, "forge3", kind);
            let runs = cli_round(&ws, &ca, "forge3", &values, &[], None).await;
            let _ = f.await.unwrap();
            for (code, stdout, stderr) in &runs {
                assert_eq!(*code, Some(5), "{kind}: {stderr}");
                assert!(stdout.is_empty(), "{kind}: nothing revealed: {stdout}");
                assert!(stderr.contains("validity proof"), "{kind}: {stderr}");
            }
            let ab = wait_feed(&mut dash, |v| {
                v["study"]["params"]["id"] == "forge3"
                    && v["ended"]["round"] == round as u64 + 1
                    && v["ended"]["status"] == "abandoned"
            })
            .await;
            assert_eq!(ab["ended"]["reason"], "proofs_failed", "{kind}");
            assert_eq!(ab["ended"]["count"], serde_json::Value::Null);
        }
        t.relay.shutdown().await;
    }
}
