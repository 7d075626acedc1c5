//! Shared helpers for the relay's end-to-end tests: temporary directories, an in-process relay
//! on port 0, a tiny HTTPS client, a dashboard client, patients, and the expected statistics
//! computed independently of the core.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod survey;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cohort_core::envelope::KeyPair;
use cohort_core::message::{Join, PatientToRelay, RelayToPatient};
use cohort_relay::client::{self, PatientError, PatientOptions, PatientReport, WsClient};
use cohort_relay::{Relay, RelayConfig};
use futures_util::{SinkExt, StreamExt};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

pub const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Generous bound for anything a test waits on, so a bug fails instead of hanging.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A directory under the target's temp dir, removed on drop.
pub struct TmpDir(pub PathBuf);

impl TmpDir {
    pub fn new(name: &str) -> TmpDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("web/pkg")).unwrap();
        std::fs::write(
            dir.join("web/index.html"),
            "<!doctype html><title>patient</title>",
        )
        .unwrap();
        std::fs::write(
            dir.join("web/hospital.html"),
            "<!doctype html><title>hospital</title>",
        )
        .unwrap();
        std::fs::write(dir.join("web/pkg/app.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(dir.join("web/pkg/app.js"), "export {};").unwrap();
        TmpDir(dir)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An in-process relay on 127.0.0.1:0 with its own directories.
pub struct TestRelay {
    pub relay: Relay,
    pub dir: TmpDir,
}

impl TestRelay {
    pub async fn start(studies: &[&str]) -> TestRelay {
        TestRelay::start_with(studies, |_| {}).await
    }

    /// Like [`TestRelay::start`], with the configuration adjusted by `tune` (limits).
    pub async fn start_with(studies: &[&str], tune: impl FnOnce(&mut RelayConfig)) -> TestRelay {
        let dir = TmpDir::new("relay");
        let mut cfg = RelayConfig::new();
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.web = dir.path("web");
        cfg.certs = dir.path("certs");
        cfg.data = dir.path("data");
        cfg.admin_token = Some(TOKEN.into());
        cfg.studies = studies.iter().map(|s| s.parse().unwrap()).collect();
        tune(&mut cfg);
        let relay = Relay::start(cfg).await.expect("relay starts");
        TestRelay { relay, dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path("certs/ca.pem")
    }

    pub fn base(&self) -> String {
        self.relay.base_url()
    }

    pub fn ws_url(&self) -> String {
        format!("wss://127.0.0.1:{}/ws", self.relay.local_addr().port())
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> HttpResponse {
        https(&self.base(), &self.ca(), "GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Option<&str>) -> HttpResponse {
        https(&self.base(), &self.ca(), "POST", path, token, body).await
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTPS request over a fresh connection that verifies the relay against `ca`.
pub async fn https(
    base: &str,
    ca: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let hostport = base.strip_prefix("https://").unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let tcp = tokio::net::TcpStream::connect((host, port.parse::<u16>().unwrap()))
        .await
        .unwrap();
    let config = cohort_relay::tls::client_config(ca).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(host.to_string()).unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = resp.parse(&raw).unwrap() else {
        panic!("incomplete response")
    };
    HttpResponse {
        status: resp.code.unwrap(),
        headers: resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&raw[n..]).into_owned(),
    }
}

/// Random values in [min, max] with `decimals` digits, as text, distinct.
pub fn random_values(n: usize, seed: u64, min: i64, max: i64, decimals: u32) -> Vec<String> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let scale = 10i64.pow(decimals);
    let span = ((max - min) * scale + 1) as u64;
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < n {
        let x = min * scale + (rng.next_u64() % span) as i64;
        if seen.insert(x) {
            out.push(fixed(x, decimals));
        }
    }
    out
}

/// `x / 10^decimals` as text with exactly `decimals` digits.
pub fn fixed(x: i64, decimals: u32) -> String {
    if decimals == 0 {
        return x.to_string();
    }
    let scale = 10i64.pow(decimals);
    let sign = if x < 0 { "-" } else { "" };
    let a = x.abs();
    format!(
        "{sign}{}.{:0w$}",
        a / scale,
        a % scale,
        w = decimals as usize
    )
}

/// Parses a fixed-point text value into an integer count of 10^-decimals.
pub fn scaled(v: &str, decimals: u32) -> i64 {
    let (i, f) = v.split_once('.').unwrap_or((v, ""));
    let neg = i.starts_with('-');
    let mut f = f.to_string();
    while f.len() < decimals as usize {
        f.push('0');
    }
    let mag = i.trim_start_matches('-').parse::<i64>().unwrap() * 10i64.pow(decimals)
        + if f.is_empty() {
            0
        } else {
            f.parse::<i64>().unwrap()
        };
    if neg { -mag } else { mag }
}

/// Statistics computed here, independently of the core, from exact integers.
#[derive(Debug)]
pub struct Expected {
    pub count: u64,
    pub sum: f64,
    pub mean: f64,
    pub stddev: f64,
    pub histogram: Vec<u64>,
}

pub fn expected(values: &[String], min: i64, max: i64, decimals: u32, buckets: u64) -> Expected {
    let scale = 10i64.pow(decimals);
    let xs: Vec<i128> = values
        .iter()
        .map(|v| i128::from(scaled(v, decimals)))
        .collect();
    let n = xs.len() as i128;
    let s1: i128 = xs.iter().sum();
    let s2: i128 = xs.iter().map(|x| x * x).sum();
    let sum = s1 as f64 / scale as f64;
    let var_num = n * s2 - s1 * s1; // n² · variance, in scaled units²
    let stddev = (var_num as f64).sqrt() / n as f64 / scale as f64;
    let range = ((max - min) * scale) as i128;
    let mut histogram = vec![0u64; buckets as usize];
    for x in &xs {
        let off = x - i128::from(min * scale);
        let b = ((off * i128::from(buckets)) / range).min(i128::from(buckets) - 1);
        histogram[b as usize] += 1;
    }
    Expected {
        count: values.len() as u64,
        sum,
        mean: sum / n as f64,
        stddev,
        histogram,
    }
}

/// Checks a result (a patient's JSON line, a ResultRow or a RoundResult's statistics as JSON).
pub fn assert_stats(got: &serde_json::Value, want: &Expected) {
    let f = |k: &str| got[k].as_f64().unwrap_or_else(|| panic!("{k} in {got}"));
    assert_eq!(got["count"].as_u64(), Some(want.count), "{got}");
    assert!(
        (f("sum") - want.sum).abs() < 1e-6,
        "sum {} vs {}",
        f("sum"),
        want.sum
    );
    assert!(
        (f("mean") - want.mean).abs() < 1e-9,
        "mean {} vs {}",
        f("mean"),
        want.mean
    );
    assert!(
        (f("stddev") - want.stddev).abs() < 1e-6,
        "stddev {} vs {}",
        f("stddev"),
        want.stddev
    );
    let hist: Vec<u64> = serde_json::from_value(got["histogram"].clone()).unwrap();
    assert_eq!(hist, want.histogram, "{got}");
}

/// A patient's completed result as the JSON the statistics checks read.
pub fn result_json(report: &PatientReport) -> serde_json::Value {
    match &report.outcome {
        // The same object as the CLI's stdout line (core's ResultSummary).
        client::PatientOutcome::Completed(r) => serde_json::to_value(r.summary()).unwrap(),
        other => panic!("not completed: {other:?}"),
    }
}

pub fn options(ws_url: &str, ca: &Path, study: &str, value: &str) -> PatientOptions {
    let mut o = PatientOptions::new(ws_url, ca, study, value);
    o.timeout = Duration::from_secs(30);
    o
}

/// Runs one library patient per option set, all at once.
pub async fn run_all(opts: Vec<PatientOptions>) -> Vec<Result<PatientReport, PatientError>> {
    let handles: Vec<_> = opts
        .into_iter()
        .map(|o| {
            tokio::spawn(async move {
                tokio::time::timeout(LIMIT, client::run_patient(&o, &mut |_| {}))
                    .await
                    .expect("patient finished in time")
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

pub async fn run_patients(
    ws_url: &str,
    ca: &Path,
    study: &str,
    values: &[String],
) -> Vec<PatientReport> {
    let opts = values
        .iter()
        .map(|v| options(ws_url, ca, study, v))
        .collect();
    run_all(opts)
        .await
        .into_iter()
        .map(|r| r.expect("patient completes"))
        .collect()
}

/// A raw patient that joins and then does nothing (keeps a round in flight).
pub async fn stalling_patient(ws_url: &str, ca: &Path, study: &str, seed: u64) -> WsClient {
    let mut ws = client::connect(ws_url, ca).await.unwrap();
    let key = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(seed)).public();
    let join = PatientToRelay::Join(Join {
        v: cohort_core::message::PROTOCOL_VERSION,
        study: study.into(),
        commitment: cohort_core::commitment::commit(
            study,
            &key,
            &cohort_core::commitment::Nonce([0; 32]),
        ),
        invite: None,
    });
    ws.send(cohort_relay::ws::to_message(join.encode()))
        .await
        .unwrap();
    ws
}

/// Reads relay messages until one matches; panics on close or after [`LIMIT`].
pub async fn wait_for(
    ws: &mut WsClient,
    mut pred: impl FnMut(&RelayToPatient) -> bool,
) -> RelayToPatient {
    let fut = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let m = RelayToPatient::decode(&t).unwrap();
                    if pred(&m) {
                        return m;
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    let m = RelayToPatient::decode_binary(&b).unwrap();
                    if pred(&m) {
                        return m;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("message in time")
}

/// A dashboard client, authenticated with `token`.
pub async fn dashboard(ws_base: &str, ca: &Path, token: &str) -> WsClient {
    let url = format!("{ws_base}/dashboard");
    let mut ws = client::connect(&url, ca).await.unwrap();
    let auth = serde_json::json!({"type": "auth", "token": token}).to_string();
    ws.send(Message::text(auth)).await.unwrap();
    ws
}

/// Reads dashboard frames until one matches.
pub async fn wait_feed(
    ws: &mut WsClient,
    mut pred: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let fut = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if pred(&v) {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("dashboard socket ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("feed frame in time")
}
