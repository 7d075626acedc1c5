//! `cohort-bench` as a library, shared by the binary and its test: a relay child process,
//! P native patients over WSS, round runners, and the idle-connection run.

pub mod cluster;
pub mod fixture;
pub mod patients;
pub mod progress;
pub mod questions;
pub mod relay_proc;
pub mod scale;
pub mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use patients::{E2eSample, Fleet, PreparedSample, client_tls, study_spec_with};
use progress::Progress;
use relay_proc::{RelayOptions, RelayProc, ensure_nofile, fresh_dir, load1};
use scale::IdleFleet;
use stats::{Line, Summary, put, r3};

/// Which rounds to run per configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// End-to-end rounds, then prepared rounds.
    Both,
    /// End-to-end rounds only (every patient's work inside the clock).
    E2e,
    /// Prepared rounds only (the relay's own path).
    Prepared,
}

/// Whether the studies run validity proofs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proofs {
    /// Each configuration twice: proofs off, then on.
    Both,
    /// Proofs on (the study default).
    On,
    /// Proofs off (`proofs=off`).
    Off,
}

impl Proofs {
    /// The settings to run, in order.
    pub fn settings(self) -> &'static [bool] {
        match self {
            Proofs::Both => &[false, true],
            Proofs::On => &[true],
            Proofs::Off => &[false],
        }
    }
}

/// What is common to every run.
#[derive(Clone, Debug)]
pub struct Common {
    /// The `cohort-relay` binary.
    pub relay_bin: PathBuf,
    /// Where the relays' temporary directories go.
    pub tmp: PathBuf,
    /// Handshakes in flight while connecting.
    pub concurrency: usize,
    /// `RUST_LOG` for the relay (`None`: its default, `info`).
    pub log_filter: Option<String>,
    /// No progress output.
    pub quiet: bool,
    /// Keep the relays' directories (and logs).
    pub keep: bool,
}

/// One round-latency configuration.
#[derive(Clone, Debug)]
pub struct RoundsConfig {
    /// Patients (= the study's cohort size and threshold).
    pub patients: usize,
    /// Measured rounds of each kind.
    pub rounds: usize,
    /// Unmeasured rounds of each kind run first.
    pub warmup: usize,
    /// Which kinds.
    pub mode: Mode,
    /// Questions of the study: 1 is the one-question bench study (`--study`); more is a
    /// questionnaire of that many number questions ([`questions`], `--study-file`) with
    /// random answers.
    pub questions: usize,
    /// Whether the study runs validity proofs (the study default; `proofs=off` otherwise).
    pub proofs: bool,
}

/// What one configuration measured.
#[derive(Clone, Debug, Default)]
pub struct RoundsReport {
    /// Patients.
    pub patients: usize,
    /// Questions of the study.
    pub questions: usize,
    /// Measured rounds of each kind.
    pub rounds: usize,
    /// Unmeasured warm-up rounds of each kind.
    pub warmup: usize,
    /// Whether the study ran validity proofs.
    pub proofs: bool,
    /// End-to-end rounds.
    pub e2e: Vec<E2eSample>,
    /// The relay's own path (first shares in → result out) in end-to-end rounds, ms.
    pub e2e_relay_path_ms: Vec<f64>,
    /// Prepared rounds.
    pub prepared: Vec<PreparedSample>,
    /// The relay's own path in prepared rounds, ms.
    pub relay_path_ms: Vec<f64>,
    /// Time to connect every patient (TCP + TLS + WebSocket), ms.
    pub connect_ms: f64,
    /// Relay CPU (user + system) per measured end-to-end round, ms.
    pub cpu_e2e_ms: Option<f64>,
    /// Relay CPU per measured prepared round, ms.
    pub cpu_prepared_ms: Option<f64>,
    /// CPU of this process (every patient task, the coordinator) per measured end-to-end
    /// round, ms.
    pub patients_cpu_e2e_ms: Option<f64>,
    /// Relay resident memory with every patient connected, before any round, KiB.
    pub rss_connected_kib: Option<u64>,
    /// Relay peak resident memory (VmHWM) over the whole configuration, KiB.
    pub peak_rss_kib: Option<u64>,
    /// 1-minute load average before and after.
    pub load: (Option<f64>, Option<f64>),
    /// `--cluster`: how the patients reached the relays (`direct`, `haproxy`); `None` in the
    /// other modes (and then none of the cluster fields is printed).
    pub via: Option<&'static str>,
    /// Index of the relay that ran the study (the one measured).
    pub ran_on: usize,
    /// `--cluster`: the relay ids, in `ran_on` order.
    pub relay_ids: Vec<String>,
    /// CPU of the load balancer per measured end-to-end round, ms.
    pub proxy_cpu_e2e_ms: Option<f64>,
    /// CPU of the load balancer per measured prepared round, ms.
    pub proxy_cpu_prepared_ms: Option<f64>,
}

fn mb(kib: Option<u64>) -> Value {
    kib.map_or(Value::Null, |k| json!(r3(k as f64 / 1024.0)))
}

fn opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |v| json!(r3(v)))
}

impl RoundsReport {
    /// The JSON line for this configuration.
    pub fn to_json(&self) -> Line {
        let mut o = Line::default();
        o.insert("patients", json!(self.patients));
        o.insert("questions", json!(self.questions));
        o.insert("rounds", json!(self.rounds));
        o.insert("warmup", json!(self.warmup));
        o.insert("proofs", json!(self.proofs));
        let e2e: Vec<f64> = self.e2e.iter().map(|s| s.ms).collect();
        put(&mut o, "", Summary::of(&e2e).as_ref());
        put(&mut o, "relay_", Summary::of(&self.relay_path_ms).as_ref());
        let seen: Vec<f64> = self.prepared.iter().map(|s| s.window_ms).collect();
        put(&mut o, "relay_seen_", Summary::of(&seen).as_ref());
        let in_e2e = Summary::of(&self.e2e_relay_path_ms);
        o.insert(
            "relay_path_in_e2e_p50_ms",
            opt(in_e2e.as_ref().map(|s| s.p50)),
        );
        let prep: Vec<f64> = self.prepared.iter().map(|s| s.prepare_ms).collect();
        o.insert("prepare_p50_ms", opt(Summary::of(&prep).map(|s| s.p50)));
        o.insert("relay_cpu_ms_per_round", opt(self.cpu_e2e_ms));
        o.insert("patients_cpu_ms_per_round", opt(self.patients_cpu_e2e_ms));
        o.insert("relay_cpu_ms_per_prepared_round", opt(self.cpu_prepared_ms));
        o.insert("relay_peak_rss_mb", mb(self.peak_rss_kib));
        o.insert("relay_rss_connected_mb", mb(self.rss_connected_kib));
        o.insert("connect_ms", json!(r3(self.connect_ms)));
        o.insert("load1_before", opt(self.load.0));
        o.insert("load1_after", opt(self.load.1));
        o.insert("results_checked", true);
        if let Some(via) = self.via {
            o.insert("via", via);
            o.insert("store", "postgres");
            o.insert("relays", self.relay_ids.len());
            o.insert("ran_on", self.relay_ids.get(self.ran_on).cloned());
            if via != "direct" {
                o.insert("haproxy_cpu_ms_per_round", opt(self.proxy_cpu_e2e_ms));
                o.insert(
                    "haproxy_cpu_ms_per_prepared_round",
                    opt(self.proxy_cpu_prepared_ms),
                );
            }
        }
        o
    }
}

/// What a configuration's relay is started with: `--study` specifications, or study files
/// (JSON, written into the relay's directory).
enum Studies {
    Flags(Vec<String>),
    Json(Vec<(String, Value)>),
}

fn relay_for(
    common: &Common,
    name: &str,
    studies: Studies,
    max_connections: usize,
) -> Result<(RelayProc, PathBuf), String> {
    let dir = fresh_dir(&common.tmp, name)?;
    let (studies, study_files) = match studies {
        Studies::Flags(s) => (s, Vec::new()),
        Studies::Json(files) => {
            let mut paths = Vec::new();
            for (id, json) in files {
                let path = dir.join(format!("{id}.json"));
                std::fs::write(&path, json.to_string())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                paths.push(path);
            }
            (Vec::new(), paths)
        }
    };
    let relay = RelayProc::start(&RelayOptions {
        bin: common.relay_bin.clone(),
        dir: dir.clone(),
        studies,
        study_files,
        max_connections,
        log_filter: common.log_filter.clone(),
        database: None,
        relay_id: None,
        certs: None,
    })?;
    Ok((relay, dir))
}

/// CPU time of this process so far, ms.
fn own_cpu_ms() -> Option<f64> {
    relay_proc::sched_ms_of(std::process::id())
}

/// The relay's path for `round`, or an error naming its log.
async fn path_ms(relay: &mut RelayProc, round: u64) -> Result<f64, String> {
    relay
        .path_of(round, Duration::from_secs(10))
        .await
        .map(|us| us as f64 / 1e3)
        .ok_or_else(|| {
            format!(
                "the relay logged no `round relay path` line for round {round} (log: {})",
                relay.log.display()
            )
        })
}

/// Runs one configuration: a fresh relay, P connected patients, the rounds.
pub async fn run_rounds(common: &Common, cfg: &RoundsConfig) -> Result<RoundsReport, String> {
    let n = cfg.patients;
    if n < 3 {
        return Err("at least 3 patients (the minimum cohort)".into());
    }
    ensure_nofile(n as u64 + 256)?;
    let load0 = load1();
    let q = cfg.questions;
    let (label, studies) = if q > 1 {
        let id = questions::study_id(n, q);
        let mut json = questions::study_json(n, q);
        json["proofs"] = json!(cfg.proofs);
        (id.clone(), Studies::Json(vec![(id, json)]))
    } else {
        (
            format!("bench{n}"),
            Studies::Flags(vec![study_spec_with(n, cfg.proofs)]),
        )
    };
    let (mut relay, dir) = relay_for(common, &label, studies, n + 64)?;
    let tls = client_tls(&relay.ca)?;
    let addr = relay.addr;
    let mut target = Target {
        label,
        addr,
        ws_path: "/ws".into(),
        relays: vec![&mut relay],
        owner: None,
        proxy_pid: None,
    };
    let mut rep = measure(common, cfg, &mut target, tls).await?;
    rep.load.0 = load0;
    drop(relay);
    if !common.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(rep)
}

/// Where one configuration's patients connect, and which relay processes may run its study.
pub(crate) struct Target<'a> {
    /// Progress label.
    pub(crate) label: String,
    /// Where the patients connect (a relay, or a load balancer in front of them).
    pub(crate) addr: SocketAddr,
    /// The WebSocket path, e.g. `/ws` or `/ws?study=ID`.
    pub(crate) ws_path: String,
    /// Every relay that may run the study; the one that logs the rounds' `round relay path`
    /// lines is the one measured.
    pub(crate) relays: Vec<&'a mut RelayProc>,
    /// Index into `relays` of the relay that ran the study, once seen.
    pub(crate) owner: Option<usize>,
    /// A process between the patients and the relays (HAProxy) whose CPU is measured too.
    pub(crate) proxy_pid: Option<u32>,
}

impl Target<'_> {
    /// CPU so far of every relay, ms (`None` if one cannot be read).
    fn cpu_ms(&self) -> Option<Vec<f64>> {
        self.relays.iter().map(|r| r.cpu_ms()).collect()
    }

    /// The relay's path for `round` (from whichever relay ran it), ms, or an error naming
    /// the logs.
    async fn path_ms(&mut self, round: u64) -> Result<f64, String> {
        if let [relay] = self.relays.as_mut_slice() {
            self.owner = Some(0);
            return path_ms(relay, round).await;
        }
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            for (i, r) in self.relays.iter_mut().enumerate() {
                if let Some(us) = r.take_path(round) {
                    if self.owner.is_some_and(|o| o != i) {
                        return Err(format!(
                            "round {round} ran on another relay ({}) than the earlier rounds",
                            r.log.display()
                        ));
                    }
                    self.owner = Some(i);
                    return Ok(us as f64 / 1e3);
                }
            }
            if std::time::Instant::now() >= end {
                let logs: Vec<String> = self
                    .relays
                    .iter()
                    .map(|r| r.log.display().to_string())
                    .collect();
                return Err(format!(
                    "no relay logged a `round relay path` line for round {round} (logs: {})",
                    logs.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// CPU of another process (HAProxy) so far, ms.
fn pid_cpu_ms(pid: Option<u32>) -> Option<f64> {
    relay_proc::sched_ms_of(pid?)
}

fn delta(a: Option<Vec<f64>>, b: Option<Vec<f64>>, i: usize) -> Option<f64> {
    Some(b?.get(i)? - a?.get(i)?)
}

/// Connects P patients to `target`, runs the rounds, closes them.
pub(crate) async fn measure(
    common: &Common,
    cfg: &RoundsConfig,
    target: &mut Target<'_>,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<RoundsReport, String> {
    let n = cfg.patients;
    let mut rep = RoundsReport {
        patients: n,
        questions: cfg.questions,
        rounds: cfg.rounds,
        warmup: cfg.warmup,
        proofs: cfg.proofs,
        load: (load1(), None),
        ..RoundsReport::default()
    };
    let label = target.label.clone();

    let mut bar = Progress::new(format!("{label} connect"), n, common.quiet);
    let t0 = std::time::Instant::now();
    let mut fleet = if cfg.questions > 1 {
        let q = cfg.questions;
        let spec = questions::spec(n, q)?;
        let mut rng = patients::os_rng();
        let answers: Vec<_> = (0..n)
            .map(|_| questions::random_answers(q, &mut rng))
            .collect();
        let result = questions::expected(&spec, &answers)?;
        let expected = patients::Expected::Questionnaire {
            n,
            result: Box::new(result),
        };
        Fleet::connect_answers(
            target.addr,
            &target.ws_path,
            tls,
            &spec.params.id,
            answers,
            expected,
            common.concurrency,
            &mut |k| bar.set(k, ""),
        )
        .await?
    } else {
        Fleet::connect_path(
            target.addr,
            &target.ws_path,
            tls,
            &format!("bench{n}"),
            n,
            common.concurrency,
            &mut |k| bar.set(k, ""),
        )
        .await?
    };
    rep.connect_ms = t0.elapsed().as_secs_f64() * 1e3;
    bar.finish("");
    // Let the relay settle (sessions spawned, first reads done) before reading its memory.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_connected: Vec<Option<u64>> = target
        .relays
        .iter()
        .map(|r| r.memory_kib().map(|m| m.0))
        .collect();

    let total = cfg.warmup + cfg.rounds;
    let per_round = |x: f64| x / cfg.rounds.max(1) as f64;
    if matches!(cfg.mode, Mode::Both | Mode::E2e) {
        let mut bar = Progress::new(format!("{label} end-to-end"), total, common.quiet);
        let mut cpu0 = None;
        let mut own0 = None;
        let mut proxy0 = None;
        for i in 0..total {
            if i == cfg.warmup {
                cpu0 = target.cpu_ms();
                own0 = own_cpu_ms();
                proxy0 = pid_cpu_ms(target.proxy_pid);
            }
            let s = fleet.e2e_round().await?;
            let path = target.path_ms(s.round).await?;
            if i >= cfg.warmup {
                rep.e2e.push(s);
                rep.e2e_relay_path_ms.push(path);
            }
            bar.set(i + 1, &format!("last {:.2} ms", s.ms));
        }
        let owner = target.owner.unwrap_or(0);
        rep.patients_cpu_e2e_ms = own0.zip(own_cpu_ms()).map(|(a, b)| per_round(b - a));
        rep.cpu_e2e_ms = delta(cpu0, target.cpu_ms(), owner).map(per_round);
        rep.proxy_cpu_e2e_ms = proxy0
            .zip(pid_cpu_ms(target.proxy_pid))
            .map(|(a, b)| per_round(b - a));
        let e2e: Vec<f64> = rep.e2e.iter().map(|s| s.ms).collect();
        bar.finish(&Summary::of(&e2e).map_or(String::new(), |s| {
            format!("p50 {:.2} ms p99 {:.2} ms", s.p50, s.p99)
        }));
    }
    if matches!(cfg.mode, Mode::Both | Mode::Prepared) {
        let mut bar = Progress::new(format!("{label} prepared"), total, common.quiet);
        let mut cpu = 0.0;
        let mut cpu_ok = true;
        let mut proxy = Some(0.0);
        for i in 0..total {
            let before = target.cpu_ms();
            let proxy_before = pid_cpu_ms(target.proxy_pid);
            let s = fleet.prepared_round().await?;
            let path = target.path_ms(s.round).await?;
            if i >= cfg.warmup {
                match delta(before, target.cpu_ms(), target.owner.unwrap_or(0)) {
                    Some(d) => cpu += d,
                    None => cpu_ok = false,
                }
                proxy = proxy
                    .zip(proxy_before.zip(pid_cpu_ms(target.proxy_pid)))
                    .map(|(sum, (a, b))| sum + b - a);
                rep.prepared.push(s);
                rep.relay_path_ms.push(path);
            }
            bar.set(i + 1, &format!("relay {path:.2} ms"));
        }
        rep.cpu_prepared_ms = cpu_ok.then(|| per_round(cpu));
        rep.proxy_cpu_prepared_ms = proxy.map(per_round);
        bar.finish(&Summary::of(&rep.relay_path_ms).map_or(String::new(), |s| {
            format!("relay p50 {:.2} ms p99 {:.2} ms", s.p50, s.p99)
        }));
    }
    let owner = target.owner.unwrap_or(0);
    rep.ran_on = owner;
    rep.rss_connected_kib = rss_connected.get(owner).copied().flatten();
    rep.peak_rss_kib = target.relays[owner].memory_kib().map(|m| m.1);
    rep.load.1 = load1();
    if !target.relays.iter_mut().all(|r| r.alive()) {
        return Err("a relay exited during the run".into());
    }
    fleet.close().await;
    Ok(rep)
}

/// The connection-scale configuration.
#[derive(Clone, Debug)]
pub struct IdleConfig {
    /// Connections to hold.
    pub connections: usize,
    /// Join each connection to a study that never fills.
    pub join: bool,
    /// How long to hold them before the second memory reading (pings every 25 s).
    pub hold: Duration,
}

/// Opens N idle connections to one relay; reports admission time and memory per connection.
pub async fn run_idle(common: &Common, cfg: &IdleConfig) -> Result<Line, String> {
    let n = cfg.connections;
    ensure_nofile(n as u64 + 256)?;
    let load_before = load1();
    let size = cohort_core::study::MAX_COHORT as usize;
    if cfg.join && n >= size {
        return Err(format!(
            "--idle-join holds at most {} connections (a study of {size} would start a round)",
            size - 1
        ));
    }
    let studies = Studies::Flags(vec![format!("id=idle,size={size},min_cohort=3")]);
    let (mut relay, dir) = relay_for(common, "idle", studies, n + 64)?;
    let tls = client_tls(&relay.ca)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, _) = relay.memory_kib().ok_or("cannot read the relay's memory")?;
    let cpu0 = relay.cpu_ms();
    let mut bar = Progress::new(format!("idle {n}"), n, common.quiet);
    let fleet = IdleFleet::open(
        relay.addr,
        tls,
        n,
        common.concurrency,
        cfg.join.then(|| "idle".to_string()),
        &mut |k| bar.set(k, ""),
    )
    .await?;
    bar.finish("");
    let cpu_admit = cpu0.zip(relay.cpu_ms()).map(|(a, b)| b - a);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_settled, _) = relay.memory_kib().ok_or("cannot read the relay's memory")?;
    let fds = relay.open_fds();
    if !common.quiet {
        eprintln!(
            "holding {n} connections for {} s (the relay pings every {} s)",
            cfg.hold.as_secs(),
            cohort_relay::ws::PING_EVERY.as_secs()
        );
    }
    tokio::time::sleep(cfg.hold).await;
    let (rss_held, hwm) = relay.memory_kib().ok_or("cannot read the relay's memory")?;
    let alive = relay.alive();
    let each = Summary::of(&fleet.each_ms);
    let per_conn = |rss: u64| r3(rss.saturating_sub(rss0) as f64 / n.max(1) as f64);
    let mut out = Line::default();
    out.insert("idle_connections", fleet.n);
    out.insert("joined", cfg.join);
    out.insert("admit_ms", r3(fleet.admit_ms));
    out.insert("admit_per_s", r3(fleet.n as f64 / (fleet.admit_ms / 1e3)));
    out.insert("connect_p50_ms", opt(each.as_ref().map(|s| s.p50)));
    out.insert("connect_p99_ms", opt(each.as_ref().map(|s| s.p99)));
    out.insert("concurrency", common.concurrency);
    out.insert("relay_cpu_ms_admit", opt(cpu_admit));
    out.insert("relay_rss_before_mb", r3(rss0 as f64 / 1024.0));
    out.insert("relay_rss_settled_mb", r3(rss_settled as f64 / 1024.0));
    out.insert("relay_rss_held_mb", r3(rss_held as f64 / 1024.0));
    out.insert("relay_peak_rss_mb", r3(hwm as f64 / 1024.0));
    out.insert(
        "rss_per_connection_kib",
        per_conn(rss_settled.max(rss_held)),
    );
    out.insert("rss_per_connection_settled_kib", per_conn(rss_settled));
    out.insert("rss_per_connection_held_kib", per_conn(rss_held));
    out.insert("hold_s", cfg.hold.as_secs());
    out.insert("relay_open_fds", fds);
    out.insert("relay_alive", alive);
    out.insert("load1_before", opt(load_before));
    out.insert("load1_after", opt(load1()));
    fleet.close(Duration::from_secs(30)).await;
    drop(relay);
    if !common.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !alive {
        return Err("the relay exited while holding the connections".into());
    }
    Ok(out)
}
