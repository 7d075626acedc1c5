//! Several relays behind HAProxy, with real processes: a throw-away PostgreSQL, two
//! `cohort-relay --database` processes, `haproxy` with deploy/haproxy.cfg in front (TLS at
//! HAProxy, re-encrypted to the relays), native `cohort-patient` processes through HAProxy.
//! Rounds of three studies complete; the relay running one study is SIGKILLed in the middle of
//! a round; the round is recorded `relay_restarted`, the study's next round completes on the
//! other relay within 15 s, completed results are kept, a dashboard on the other relay heard
//! of a round completed on the first, and no patient value reaches PostgreSQL.
//!
//! Needs PostgreSQL and HAProxy (`scripts/setup.sh` installs both); fails, never skips,
//! without them.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use support::pg;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const RELAY: &str = env!("CARGO_BIN_EXE_cohort-relay");
const PATIENT: &str = env!("CARGO_BIN_EXE_cohort-patient");
const STUDIES: [&str; 3] = ["alpha", "bravo", "charlie"];

fn spec(id: &str) -> String {
    format!("id={id},size=3,threshold=3,min=0,max=300,decimals=1,buckets=10")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct RelayProc {
    child: Child,
    id: String,
    base: String,
    log: PathBuf,
}

impl RelayProc {
    async fn spawn(dir: &TmpDir, id: &str, db: &str) -> RelayProc {
        let log = dir.path(&format!("{id}.log"));
        let mut cmd = Command::new(RELAY);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--relay-id",
            id,
            "--database",
            db,
        ])
        .arg("--web")
        .arg(dir.path("web"))
        .arg("--certs")
        .arg(dir.path("certs"))
        .arg("--data")
        .arg(dir.path(&format!("data-{id}")));
        for s in STUDIES {
            cmd.arg("--study").arg(spec(s));
        }
        cmd.env("COHORT_ADMIN_TOKEN", TOKEN)
            .env_remove("RUST_LOG")
            .env_remove("COHORT_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut base = None;
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(b) = line.strip_prefix("listening on ") {
                    base = Some(b.to_string());
                }
                if line.starts_with("CA certificate: ") {
                    break;
                }
            }
        };
        tokio::time::timeout(LIMIT, read)
            .await
            .expect("startup lines");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let base = base.unwrap_or_else(|| {
            panic!(
                "relay {id} did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        RelayProc {
            child,
            id: id.into(),
            base,
            log,
        }
    }

    /// The studies this relay runs, from its own /healthz.
    async fn studies(&self, ca: &Path) -> Vec<String> {
        let r = https(&self.base, ca, "GET", "/healthz", None, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["relay"], self.id.as_str());
        serde_json::from_value(v["studies"].clone()).unwrap()
    }
}

/// HAProxy with deploy/haproxy.cfg, as in deploy/README.md.
struct Haproxy {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Haproxy {
    async fn spawn(dir: &TmpDir, relays: [&RelayProc; 2]) -> Haproxy {
        let found = std::process::Command::new("haproxy").arg("-v").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "haproxy is not installed; run scripts/setup.sh"
        );
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg");
        let tls = dir.path("tls");
        std::fs::create_dir_all(&tls).unwrap();
        // HAProxy's certificate: issued by the same local CA as the relays' (certs/).
        let mut pem = std::fs::read_to_string(dir.path("certs/cert.pem")).unwrap();
        pem.push_str(&std::fs::read_to_string(dir.path("certs/key.pem")).unwrap());
        std::fs::write(tls.join("haproxy.pem"), pem).unwrap();
        std::fs::copy(dir.path("certs/ca.pem"), tls.join("ca.pem")).unwrap();
        let port = free_port();
        let hostport = |r: &RelayProc| r.base.strip_prefix("https://").unwrap().to_string();
        let log = dir.path("haproxy.log");
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db")
            .arg("-f")
            .arg(&cfg)
            .env("COHORT_LISTEN", format!("127.0.0.1:{port}"))
            .env("COHORT_TLS", &tls)
            .env("COHORT_RUN", dir.path(""))
            .env("COHORT_RELAY1", hostport(relays[0]))
            .env("COHORT_RELAY2", hostport(relays[1]))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path("haproxy.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        let check = std::process::Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .envs(
                cmd.as_std()
                    .get_envs()
                    .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
            )
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = cmd.spawn().unwrap();
        let base = format!("https://127.0.0.1:{port}");
        let h = Haproxy { child, base, log };
        let ca = dir.path("certs/ca.pem");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok();
            if up
                && https(&h.base, &ca, "GET", "/healthz", None, None)
                    .await
                    .status
                    == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not come up: {}",
                std::fs::read_to_string(&h.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        h
    }

    fn ws(&self) -> String {
        format!("{}/ws", self.base.replace("https://", "wss://"))
    }
}

/// Runs `cohort-patient` through HAProxy; returns (exit code, stdout, stderr).
async fn patient(hap: &Haproxy, ca: &Path, study: &str, value: &str, extra: &[&str]) -> Patient {
    let out = tokio::time::timeout(
        LIMIT,
        Command::new(PATIENT)
            .args(["--relay", &hap.ws(), "--study", study, "--value", value])
            .arg("--ca")
            .arg(ca)
            .args(["--retry-s", "30"])
            .args(extra)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("cohort-patient finished in time")
    .unwrap();
    Patient {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

struct Patient {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Whether `text` holds the number `v` on its own (not as part of a longer number, such as
/// a mean that starts with the same digits).
fn has_number(text: &str, v: &str) -> bool {
    let num = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || c == '.');
    text.match_indices(v).any(|(i, _)| {
        !num(text[..i].chars().next_back()) && !num(text[i + v.len()..].chars().next())
    })
}

/// Values of one round, distinct across the whole test (so each can be looked for in a dump).
fn values(seed: u64) -> Vec<String> {
    random_values(3, seed, 100, 250, 1)
}

/// One complete round of `study` through HAProxy: every patient gets the expected result.
async fn complete_round(hap: &Haproxy, ca: &Path, study: &str, vals: &[String]) -> u64 {
    let runs = vals.iter().map(|v| patient(hap, ca, study, v, &[]));
    let outs = futures_util::future::join_all(runs).await;
    let want = expected(vals, 0, 300, 1, 10);
    let mut round = None;
    for o in outs {
        assert_eq!(o.code, Some(0), "{study}: {}{}", o.stdout, o.stderr);
        let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
        assert_eq!(v["study"], study);
        assert_stats(&v, &want);
        let r = v["round"].as_u64().unwrap();
        assert!(round.is_none_or(|x| x == r), "one round");
        round = Some(r);
    }
    round.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_behind_haproxy_survive_a_sigkill() {
    let started = Instant::now();
    let pg = pg::start("cluster");
    let dir = TmpDir::new("cluster");
    let ca = dir.path("certs/ca.pem");
    // The first relay generates the development CA and certificate; the second loads them.
    let r1 = RelayProc::spawn(&dir, "relay-1", &pg.url()).await;
    let r2 = RelayProc::spawn(&dir, "relay-2", &pg.url()).await;
    let hap = Haproxy::spawn(&dir, [&r1, &r2]).await;
    let mut used: Vec<String> = Vec::new();
    let mut seed = 1;
    let mut next_values = |used: &mut Vec<String>| {
        seed += 1;
        let v = values(seed);
        used.extend(v.iter().cloned());
        v
    };

    // Round 1 of each study, all at once, through HAProxy.
    let vals: Vec<Vec<String>> = STUDIES.iter().map(|_| next_values(&mut used)).collect();
    let rounds = futures_util::future::join_all(
        STUDIES
            .iter()
            .zip(&vals)
            .map(|(s, v)| complete_round(&hap, &ca, s, v)),
    )
    .await;
    let mut done: Vec<(String, u64, Vec<String>)> = STUDIES
        .iter()
        .zip(rounds)
        .zip(vals)
        .map(|((s, r), v)| (s.to_string(), r, v))
        .collect();

    // Each study runs on exactly one relay.
    let (s1, s2) = (r1.studies(&ca).await, r2.studies(&ca).await);
    for s in STUDIES {
        let n = s1.iter().chain(&s2).filter(|x| *x == s).count();
        assert_eq!(n, 1, "{s} runs on one relay: {s1:?} {s2:?}");
    }
    let (victim, survivor) = if s1.iter().any(|s| s == "bravo") {
        (r1, r2)
    } else {
        (r2, r1)
    };
    eprintln!(
        "bravo runs on {}; relay-1 runs {s1:?}, relay-2 runs {s2:?}",
        victim.id
    );

    // A dashboard on the survivor hears of a round completed on the victim (LISTEN/NOTIFY).
    let survivor_ws = format!("{}/ws", survivor.base.replace("https://", "wss://"));
    let mut dash = dashboard(&survivor_ws, &ca, TOKEN).await;
    wait_feed(&mut dash, |v| v["type"] == "snapshot").await;
    let v = next_values(&mut used);
    let r = complete_round(&hap, &ca, "bravo", &v).await;
    let heard = wait_feed(&mut dash, |f| {
        f["type"] == "status"
            && f["ended"]["status"] == "completed"
            && f["ended"]["study"] == "bravo"
            && f["ended"]["round"] == r
    })
    .await;
    assert_stats(&heard["ended"], &expected(&v, 0, 300, 1, 10));
    done.push(("bravo".into(), r, v));

    // Middle of a round: three patients join and then stay silent, so the round (its roster
    // frozen, its row `running` in PostgreSQL) waits on the victim for their next step.
    let bravo_ws = format!("{}?study=bravo", hap.ws());
    let mut stalled = Vec::new();
    for i in 0..3 {
        stalled.push(stalling_patient(&bravo_ws, &ca, "bravo", 100 + i).await);
    }
    let store = cohort_relay::store::Store::connect_postgres(&pg.url())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let in_flight = loop {
        let rows = store.rounds("bravo").await.unwrap();
        if let Some(r) = rows.iter().find(|r| r.status == "running") {
            break r.round;
        }
        assert!(Instant::now() < deadline, "no round in flight: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // SIGKILL the relay running bravo.
    let mut victim = victim;
    victim.child.start_kill().unwrap();
    let killed = Instant::now();
    let killed_ms = now_ms();
    victim.child.wait().await.unwrap();
    drop(stalled);

    // The next round of every study completes through HAProxy, on the survivor.
    let vals: Vec<Vec<String>> = STUDIES.iter().map(|_| next_values(&mut used)).collect();
    let rounds = futures_util::future::join_all(STUDIES.iter().zip(&vals).map(|(s, v)| {
        let hap = &hap;
        let ca = &ca;
        async move {
            let r = complete_round(hap, ca, s, v).await;
            (r, killed.elapsed())
        }
    }))
    .await;
    for ((s, (r, took)), v) in STUDIES.iter().zip(rounds).zip(vals) {
        eprintln!("after the kill: {s} round {r} completed {took:?} after the SIGKILL");
        if *s == "bravo" {
            assert!(
                took < Duration::from_secs(15),
                "bravo's next round completed {took:?} after the kill"
            );
            assert!(r > in_flight);
        }
        done.push((s.to_string(), r, v));
    }
    let owned = survivor.studies(&ca).await;
    for s in STUDIES {
        assert!(
            owned.iter().any(|x| x == s),
            "{s} now on the survivor: {owned:?}"
        );
    }

    // Through HAProxy: the killed round is recorded relay_restarted, results are all there.
    let get = |path: String| {
        let base = hap.base.clone();
        let ca = ca.clone();
        async move {
            let r = https(&base, &ca, "GET", &path, Some(TOKEN), None).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            r.json()
        }
    };
    let rounds = get("/api/studies/bravo/rounds".into()).await;
    let killed_row = rounds
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["round"] == in_flight)
        .unwrap_or_else(|| panic!("{rounds}"));
    assert_eq!(killed_row["status"], "abandoned", "{killed_row}");
    assert_eq!(killed_row["reason"], "relay_restarted", "{killed_row}");
    let next = rounds
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["round"].as_u64() > Some(in_flight))
        .filter_map(|r| r["started_at_ms"].as_u64())
        .min()
        .unwrap();
    eprintln!(
        "FAILOVER: SIGKILL to bravo's next round started (roster frozen) on the survivor: {} ms",
        next.saturating_sub(killed_ms)
    );
    for s in STUDIES {
        let results = get(format!("/api/studies/{s}/results")).await;
        let results = results.as_array().unwrap();
        for (study, round, v) in done.iter().filter(|d| d.0 == s) {
            let row = results
                .iter()
                .find(|r| r["round"] == *round)
                .unwrap_or_else(|| panic!("{study} round {round} kept: {results:?}"));
            assert_stats(row, &expected(v, 0, 300, 1, 10));
        }
    }

    // No value in PostgreSQL, nor in any log.
    let dump = pg.dump().unwrap();
    assert!(dump.contains("relay_restarted"), "the dump has the data");
    for v in &used {
        assert!(!has_number(&dump, v), "value {v} in the database dump");
        for log in [&victim.log, &survivor.log, &hap.log] {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(!has_number(&text, v), "value {v} in {}", log.display());
        }
    }
    drop(hap.child);
    eprintln!("cluster test took {:?}", started.elapsed());
}
