//! P native patients, each a tokio task owning one WSS connection to the relay and driving a
//! fresh core [`Patient`] per round, and the coordinator that runs rounds across them.
//!
//! Two kinds of round:
//! - **end to end** ([`Fleet::e2e_round`]): the clock starts, then every patient makes a new
//!   `Patient` (new key pair), joins, agrees keys with the roster, splits and seals, opens the
//!   delivery and sends its partial sum; the clock stops when the last patient has the result.
//! - **prepared** ([`Fleet::prepared_round`]): before the clock, every patient joins and turns
//!   the roster into its sealed `shares` frame; the coordinator plays the relay's routing in
//!   process: it transposes all shares into each patient's delivery
//!   (`cohort_core::testing::transpose`) and, in a study with validity proofs, every patient's
//!   `verify` into each checker's `checks` and every checker's `verdict` into each patient's
//!   `verdicts`, as core's hospital does; each patient's own `Patient` answers each of them
//!   (verify, verdict, partial sum). Then the clock starts, every prepared `shares` frame is
//!   released at once, and each patient answers each of the relay's binary frames (delivery,
//!   checks, verdicts) with its prepared answer without decoding it. Afterwards each patient
//!   checks that every frame the relay sent equals, byte for byte, the one it prepared from.
//!   This isolates the relay's own path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_core::answer::Answers;
use cohort_core::decimal::Decimal;
use cohort_core::frame::ShareList;
use cohort_core::message::{
    Checks, PatientToRelay, RelayToPatient, RoundResult, Shares, Verdict, Verdicts, Verify, Wire,
};
use cohort_core::proof::{CheckSums, VERIFY_ENTRY_LEN, VerdictTags, checker_of, settle};
use cohort_core::protocol::{Patient, PatientEvent};
use cohort_core::questionnaire::QuestionnaireResult;
use cohort_core::testing::transpose;
use cohort_relay::clock::Clock;
use cohort_relay::ws::to_message;
use futures_util::{SinkExt, StreamExt};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A patient's connection.
pub type Ws = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Largest frame a bench patient accepts.
pub const MAX_FRAME: usize = cohort_relay::client::MAX_MESSAGE_BYTES;

/// How long any one phase of a round may take before the bench gives up.
pub const PHASE_LIMIT: Duration = Duration::from_secs(900);

/// The client TLS configuration: trusts the relay's CA, and never resumes sessions (every
/// patient is a separate device, so every handshake is a full one).
pub fn client_tls(ca: &std::path::Path) -> Result<Arc<ClientConfig>, String> {
    let cfg = cohort_relay::tls::client_config(ca).map_err(|e| e.to_string())?;
    let mut cfg = (*cfg).clone();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// The WebSocket configuration of bench patients.
pub fn client_ws_config() -> WebSocketConfig {
    cohort_relay::ws::config(MAX_FRAME)
}

/// Opens one WSS connection to the relay's patient socket (TCP, TLS 1.3 with certificate
/// verification, WebSocket upgrade).
pub async fn connect(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    ws_config: WebSocketConfig,
) -> Result<Ws, String> {
    connect_path(addr, "/ws", tls, ws_config).await
}

/// [`connect`] to another path on the relay (or on a load balancer), e.g. `/ws?study=ID`.
pub async fn connect_path(
    addr: SocketAddr,
    path: &str,
    tls: Arc<ClientConfig>,
    ws_config: WebSocketConfig,
) -> Result<Ws, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let url = format!("wss://{addr}{path}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, tls, Some(ws_config))
        .await
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
    Ok(ws)
}

/// The study specification for a bench of `n` patients (additive: threshold = n), with
/// deadlines long enough for a loaded 2-core box at n = 1000.
pub fn study_spec(n: usize) -> String {
    study_spec_with(n, true)
}

/// [`study_spec`] with validity proofs on (the study default) or off (`proofs=off`).
pub fn study_spec_with(n: usize, proofs: bool) -> String {
    let off = if proofs { "" } else { ",proofs=off" };
    format!(
        "id=bench{n},size={n},threshold={n},min_cohort=3,min=0,max=300,decimals=1,buckets=10,shares_s=3600,partials_s=3600{off}"
    )
}

/// The value patient `i` contributes (cm, one decimal).
pub fn value_of(i: usize) -> (Decimal, f64) {
    let whole = 150 + (i % 50) as i64;
    let tenth = (i % 10) as i64;
    let d = Decimal::new(whole * 10 + tenth, 1).expect("in range");
    (d, whole as f64 + tenth as f64 / 10.0)
}

/// What every round's result must say.
#[derive(Clone, Debug)]
pub enum Expected {
    /// The one-question bench study: `n` patients, the sum of their [`value_of`]s.
    Single {
        /// Patients.
        n: usize,
        /// Sum of their values.
        sum: f64,
    },
    /// A questionnaire: `n` patients and exactly this revealed result.
    Questionnaire {
        /// Patients.
        n: usize,
        /// The result (every question's count, sum, moments and histogram, every pair's).
        result: Box<QuestionnaireResult>,
    },
}

impl Expected {
    /// What a round of `n` bench patients of the one-question study must produce.
    pub fn for_n(n: usize) -> Expected {
        Expected::Single {
            n,
            sum: (0..n).map(|i| value_of(i).1).sum(),
        }
    }

    fn n(&self) -> usize {
        match self {
            Expected::Single { n, .. } | Expected::Questionnaire { n, .. } => *n,
        }
    }

    /// Checks a round's result: every patient counted, the full roster, and the exact sum
    /// (one question) or the exact questionnaire result.
    pub fn check(&self, r: &RoundResult) -> Result<(), String> {
        let n = self.n();
        if r.roster_size as usize != n
            || r.contributors.len() != n
            || r.questionnaire.count != n as u64
            || !r.excluded.is_empty()
        {
            return Err(format!(
                "wrong result for round {}: count {} roster {} contributors {} excluded {} (expected {n})",
                r.round,
                r.questionnaire.count,
                r.roster_size,
                r.contributors.len(),
                r.excluded.len(),
            ));
        }
        match self {
            Expected::Single { sum, .. } => {
                let Some(s) = &r.statistics else {
                    return Err(format!(
                        "round {}: no one-question statistics in the result",
                        r.round
                    ));
                };
                let sum_ok = (s.sum - sum).abs() <= 1e-6 * sum.abs().max(1.0);
                if s.count != n as u64 || !sum_ok {
                    return Err(format!(
                        "wrong result for round {}: count {} sum {} (expected {n} / {sum})",
                        r.round, s.count, s.sum
                    ));
                }
            }
            Expected::Questionnaire { result, .. } => {
                if r.questionnaire != **result {
                    return Err(format!(
                        "wrong questionnaire result for round {} ({} questions, {} pairs; expected {} / {})",
                        r.round,
                        r.questionnaire.questions.0.len(),
                        r.questionnaire.pairs.len(),
                        result.questions.0.len(),
                        result.pairs.len(),
                    ));
                }
            }
        }
        Ok(())
    }
}

enum Cmd {
    E2e,
    Prepare,
    Feed(Box<RelayToPatient>),
    Go,
    Verify,
    Close,
}

enum Report {
    Done {
        idx: usize,
        round: u64,
        at: Instant,
    },
    Shares {
        idx: usize,
        you: u32,
        shares: Shares,
    },
    Answer {
        idx: usize,
        out: Box<PatientToRelay>,
    },
    Verified,
    Failed {
        idx: usize,
        error: String,
    },
}

/// One end-to-end round.
#[derive(Clone, Copy, Debug)]
pub struct E2eSample {
    /// Round id.
    pub round: u64,
    /// From the start signal to the last patient holding the checked result, in ms.
    pub ms: f64,
}

/// One prepared round.
#[derive(Clone, Copy, Debug)]
pub struct PreparedSample {
    /// Round id.
    pub round: u64,
    /// Untimed preparation (join, roster, sealing, the precomputed answers: verify, verdict
    /// and partial sum), in ms.
    pub prepare_ms: f64,
    /// From the release of the prepared `shares` frames to the last patient holding the
    /// checked result, as the patients see it, in ms.
    pub window_ms: f64,
}

/// P connected patients.
pub struct Fleet {
    cmds: Vec<mpsc::UnboundedSender<Cmd>>,
    reports: mpsc::UnboundedReceiver<Report>,
    n: usize,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("n", &self.n).finish()
    }
}

impl Fleet {
    /// Connects `n` patients to the relay at `addr` (at most `concurrency` handshakes at a
    /// time) and starts their tasks. `progress` sees the number connected so far.
    pub async fn connect(
        addr: SocketAddr,
        tls: Arc<ClientConfig>,
        study: &str,
        n: usize,
        concurrency: usize,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<Fleet, String> {
        Fleet::connect_path(addr, "/ws", tls, study, n, concurrency, progress).await
    }

    /// [`Fleet::connect`] with every patient on `path` (e.g. `/ws?study=ID`, which a load
    /// balancer routes on), for the one-question bench study: patient `i` answers
    /// [`value_of`]`(i)`.
    pub async fn connect_path(
        addr: SocketAddr,
        path: &str,
        tls: Arc<ClientConfig>,
        study: &str,
        n: usize,
        concurrency: usize,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<Fleet, String> {
        let answers = (0..n).map(|i| Answers::single(value_of(i).0)).collect();
        let expected = Expected::for_n(n);
        Fleet::connect_answers(
            addr,
            path,
            tls,
            study,
            answers,
            expected,
            concurrency,
            progress,
        )
        .await
    }

    /// Connects one patient per entry of `answers` on `path` (patient `i` joins with
    /// `answers[i]`) and starts their tasks; every round's result is checked against
    /// `expected`.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect_answers(
        addr: SocketAddr,
        path: &str,
        tls: Arc<ClientConfig>,
        study: &str,
        answers: Vec<Answers>,
        expected: Expected,
        concurrency: usize,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<Fleet, String> {
        let n = answers.len();
        let path: Arc<str> = path.into();
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let (conn_tx, mut conn_rx) = mpsc::unbounded_channel();
        for idx in 0..n {
            let (sem, tls, conn_tx) = (sem.clone(), tls.clone(), conn_tx.clone());
            let path = path.clone();
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                let r = connect_path(addr, &path, tls, client_ws_config()).await;
                let _ = conn_tx.send((idx, r));
            });
        }
        drop(conn_tx);
        let mut conns: Vec<Option<Ws>> = (0..n).map(|_| None).collect();
        let mut done = 0;
        while let Some((idx, r)) = conn_rx.recv().await {
            conns[idx] = Some(r.map_err(|e| format!("patient {idx}: {e}"))?);
            done += 1;
            progress(done);
        }
        let study: Arc<str> = study.into();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let mut cmds = Vec::with_capacity(n);
        for (idx, (ws, answers)) in conns.into_iter().zip(answers).enumerate() {
            let ws = ws.ok_or_else(|| format!("patient {idx} never connected"))?;
            let (tx, rx) = mpsc::unbounded_channel();
            cmds.push(tx);
            let task = PatientTask {
                idx,
                ws,
                answers,
                study: study.clone(),
                expected: expected.clone(),
                clock: Clock::new(),
                rng: os_rng(),
                prepared: None,
                reports: report_tx.clone(),
            };
            tokio::spawn(task.run(rx));
        }
        Ok(Fleet { cmds, reports, n })
    }

    fn broadcast(&self, cmd: impl Fn() -> Cmd) -> Result<(), String> {
        for tx in &self.cmds {
            tx.send(cmd())
                .map_err(|_| "a patient task has stopped".to_string())?;
        }
        Ok(())
    }

    async fn next_report(&mut self) -> Result<Report, String> {
        match tokio::time::timeout(PHASE_LIMIT, self.reports.recv()).await {
            Ok(Some(Report::Failed { idx, error })) => Err(format!("patient {idx}: {error}")),
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err("every patient task has stopped".into()),
            Err(_) => Err(format!("no progress for {} s", PHASE_LIMIT.as_secs())),
        }
    }

    /// Collects one `Done` per patient: the round id and the latest arrival instant.
    async fn collect_done(&mut self) -> Result<(u64, Instant), String> {
        let mut round = None;
        let mut last: Option<Instant> = None;
        for _ in 0..self.n {
            match self.next_report().await? {
                Report::Done { idx, round: r, at } => {
                    if *round.get_or_insert(r) != r {
                        return Err(format!(
                            "patient {idx} finished round {r}, others {round:?}"
                        ));
                    }
                    last = Some(last.map_or(at, |l| l.max(at)));
                }
                other => return Err(format!("unexpected report {}", other.name())),
            }
        }
        Ok((round.expect("n > 0"), last.expect("n > 0")))
    }

    /// Runs one end-to-end round (everything inside the clock).
    pub async fn e2e_round(&mut self) -> Result<E2eSample, String> {
        let t0 = Instant::now();
        self.broadcast(|| Cmd::E2e)?;
        let (round, last) = self.collect_done().await?;
        Ok(E2eSample {
            round,
            ms: last.duration_since(t0).as_secs_f64() * 1e3,
        })
    }

    /// Runs one prepared round (only the relay's path and the frames' travel inside the
    /// clock).
    pub async fn prepared_round(&mut self) -> Result<PreparedSample, String> {
        let t0 = Instant::now();
        self.broadcast(|| Cmd::Prepare)?;
        let n = self.n;
        let mut by_you: Vec<Option<Shares>> = (0..n).map(|_| None).collect();
        let mut idx_of_you = vec![usize::MAX; n];
        for _ in 0..n {
            match self.next_report().await? {
                Report::Shares { idx, you, shares } => {
                    let slot = you
                        .checked_sub(1)
                        .map(|i| i as usize)
                        .filter(|&i| i < n)
                        .ok_or_else(|| format!("patient {idx}: roster index {you}"))?;
                    idx_of_you[slot] = idx;
                    by_you[slot] = Some(shares);
                }
                other => return Err(format!("unexpected report {}", other.name())),
            }
        }
        let by_you: Vec<Shares> = by_you
            .into_iter()
            .map(|s| s.ok_or("a roster index had no patient"))
            .collect::<Result<_, _>>()?;
        let round = by_you[0].round;
        let deliveries = (1..=n as u32)
            .map(|to| {
                transpose(&by_you, to, round)
                    .map(RelayToPatient::Delivery)
                    .ok_or_else(|| format!("a member sent nothing to member {to}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        drop(by_you);
        let mut answers = self.feed(&idx_of_you, deliveries).await?;
        if answers
            .iter()
            .all(|m| matches!(m, PatientToRelay::Verify(_)))
        {
            // Validity proofs: verify → checks, verdict → verdicts, as the hospital routes them.
            let verifies: Vec<Verify> = answers
                .into_iter()
                .filter_map(|m| match m {
                    PatientToRelay::Verify(v) => Some(v),
                    _ => None,
                })
                .collect();
            let checks = checks_for(&verifies, round)?;
            let verdicts = self
                .feed(&idx_of_you, checks)
                .await?
                .into_iter()
                .map(|m| match m {
                    PatientToRelay::Verdict(v) => Ok(v),
                    other => Err(format!("expected a verdict, got {}", other.kind())),
                })
                .collect::<Result<Vec<Verdict>, String>>()?;
            answers = self
                .feed(&idx_of_you, verdicts_for(&verdicts, round)?)
                .await?;
        }
        if let Some(other) = answers
            .iter()
            .find(|m| !matches!(m, PatientToRelay::PartialSum(_)))
        {
            return Err(format!("expected a partial sum, got {}", other.kind()));
        }
        let prepare_ms = t0.elapsed().as_secs_f64() * 1e3;
        let released = Instant::now();
        self.broadcast(|| Cmd::Go)?;
        let (r, last) = self.collect_done().await?;
        if r != round {
            return Err(format!("prepared round {round} but finished {r}"));
        }
        let window_ms = last.duration_since(released).as_secs_f64() * 1e3;
        self.broadcast(|| Cmd::Verify)?;
        for _ in 0..n {
            match self.next_report().await? {
                Report::Verified => {}
                other => return Err(format!("unexpected report {}", other.name())),
            }
        }
        Ok(PreparedSample {
            round,
            prepare_ms,
            window_ms,
        })
    }

    /// Hands `msgs[j]` (what the relay will send roster member j + 1) to that member's
    /// patient, which records it and its answer; returns the answers by roster index.
    async fn feed(
        &mut self,
        idx_of_you: &[usize],
        msgs: Vec<RelayToPatient>,
    ) -> Result<Vec<PatientToRelay>, String> {
        let n = self.n;
        if msgs.len() != n {
            return Err(format!("{} messages for {n} members", msgs.len()));
        }
        let mut slot_of_idx = vec![usize::MAX; n];
        for (slot, (&idx, msg)) in idx_of_you.iter().zip(msgs).enumerate() {
            slot_of_idx[idx] = slot;
            self.cmds[idx]
                .send(Cmd::Feed(Box::new(msg)))
                .map_err(|_| "a patient task has stopped".to_string())?;
        }
        let mut answers: Vec<Option<PatientToRelay>> = (0..n).map(|_| None).collect();
        for _ in 0..n {
            match self.next_report().await? {
                Report::Answer { idx, out } => answers[slot_of_idx[idx]] = Some(*out),
                other => return Err(format!("unexpected report {}", other.name())),
            }
        }
        answers
            .into_iter()
            .map(|a| a.ok_or_else(|| "a member did not answer".to_string()))
            .collect()
    }

    /// Closes every connection.
    pub async fn close(mut self) {
        let _ = self.broadcast(|| Cmd::Close);
        self.cmds.clear();
        while self.reports.recv().await.is_some() {}
    }
}

/// A generator seeded from the operating system.
pub fn os_rng() -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's random generator failed");
    ChaCha20Rng::from_seed(seed)
}

impl Report {
    /// The report's kind, for errors (never its contents).
    fn name(&self) -> &'static str {
        match self {
            Report::Done { .. } => "done",
            Report::Shares { .. } => "shares",
            Report::Answer { .. } => "answer",
            Report::Verified => "verified",
            Report::Failed { .. } => "failed",
        }
    }
}

/// The `checks` frame the hospital sends each roster member (by index − 1) in an additive
/// round where every member is keyed and contributed, from every member's `verify` (by
/// index − 1): each member checks the proof of the member before it and gets the sum of the
/// other verifiers' entries for it, tagged with their number (core's `proof::CheckSums`, as
/// core/src/protocol/hospital/verification.rs, `send_checks`, uses it).
pub fn checks_for(verifies: &[Verify], round: u64) -> Result<Vec<RelayToPatient>, String> {
    let n = verifies.len() as u32;
    let keyed: Vec<u32> = (1..=n).collect();
    let mut sums = CheckSums::new(verifies.len());
    for (j, v) in verifies.iter().enumerate() {
        if !sums.add(&v.checks) {
            return Err(format!("member {}: a malformed verify", j + 1));
        }
    }
    let mut by_checker: Vec<Option<RelayToPatient>> = (0..n).map(|_| None).collect();
    for dealer in 1..=n {
        let (k, _) = checker_of(&keyed, &keyed, dealer).ok_or("no checker")?;
        let mut checks = ShareList::with_capacity(VERIFY_ENTRY_LEN, 1);
        let (count, sum) = sums.entry(dealer);
        if count > 0 {
            checks.push(count, &sum);
        }
        by_checker[k as usize - 1] = Some(RelayToPatient::Checks(Checks {
            round,
            dealer,
            checks,
        }));
    }
    by_checker
        .into_iter()
        .map(|c| c.ok_or_else(|| "a member checks no proof".to_string()))
        .collect()
}

/// The `verdicts` frame the hospital sends each roster member (by index − 1), from every
/// checker's `verdict` (by index − 1): the proofs not found valid, and the sum of the verdict
/// tags addressed to the member (core's `proof::VerdictTags` and `proof::settle`, as
/// `settle_verdicts` uses them).
pub fn verdicts_for(verdicts: &[Verdict], round: u64) -> Result<Vec<RelayToPatient>, String> {
    let n = verdicts.len() as u32;
    let keyed: Vec<u32> = (1..=n).collect();
    let mut tags = VerdictTags::new(verdicts.len());
    let mut received = vec![None; verdicts.len()];
    for dealer in 1..=n {
        let (k, _) = checker_of(&keyed, &keyed, dealer).ok_or("no checker")?;
        let v = &verdicts[k as usize - 1];
        if v.dealer != dealer {
            return Err(format!(
                "checker {k}: a verdict on {} not {dealer}",
                v.dealer
            ));
        }
        if !tags.add(&v.tags) {
            return Err(format!("checker {k}: malformed verdict tags"));
        }
        received[dealer as usize - 1] = Some(v.verdict);
    }
    let (_, _, listed) = settle(&keyed, &received);
    Ok((1..=n)
        .map(|to| {
            RelayToPatient::Verdicts(Verdicts {
                round,
                tag: tags.sum(to),
                listed: listed.clone(),
            })
        })
        .collect())
}

/// One binary frame the relay will send in a prepared round, and the patient's answer.
struct Step {
    /// The frame's kind (its byte 3).
    kind: u8,
    /// The frame as the relay must send it.
    expected: Vec<u8>,
    /// The prepared answer.
    reply: Message,
}

/// A prepared patient, between `Prepare` and the end of the round.
struct Prepared {
    patient: Patient,
    shares_msg: Message,
    /// The relay's frames to answer, in order.
    steps: Vec<Step>,
    /// The frames the relay sent in their place.
    received: Vec<Message>,
}

struct PatientTask {
    idx: usize,
    ws: Ws,
    answers: Answers,
    study: Arc<str>,
    expected: Expected,
    clock: Clock,
    rng: ChaCha20Rng,
    prepared: Option<Prepared>,
    reports: mpsc::UnboundedSender<Report>,
}

/// The next text or binary message from the relay.
async fn next_frame(ws: &mut Ws) -> Result<Message, String> {
    loop {
        match ws.next().await {
            None => return Err("the relay closed the connection".into()),
            Some(Err(e)) => return Err(format!("connection lost: {e}")),
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Ok(m),
            Some(Ok(Message::Close(_))) => return Err("the relay closed the connection".into()),
            Some(Ok(_)) => {}
        }
    }
}

fn decode(frame: &Message) -> Result<RelayToPatient, String> {
    match frame {
        Message::Text(t) => RelayToPatient::decode_with_limit(t, MAX_FRAME),
        _ => RelayToPatient::decode_binary_with_limit(&frame.clone().into_data(), MAX_FRAME),
    }
    .map_err(|e| format!("bad frame: {e}"))
}

/// Turns the end-of-round events into a result or an error.
fn outcome(ev: PatientEvent) -> Option<Result<RoundResult, String>> {
    match ev {
        PatientEvent::Completed(r) => Some(Ok(r)),
        PatientEvent::Abandoned { round, reason } => {
            Some(Err(format!("round {round} abandoned: {reason}")))
        }
        PatientEvent::Refused(e) => Some(Err(format!("patient refused: {e}"))),
        PatientEvent::RelayError { code, message } => {
            Some(Err(format!("relay refused: {message} ({code:?})")))
        }
        _ => None,
    }
}

impl PatientTask {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        while let Some(cmd) = cmds.recv().await {
            let idx = self.idx;
            let report = match cmd {
                Cmd::E2e => self
                    .e2e()
                    .await
                    .map(|(round, at)| Report::Done { idx, round, at }),
                Cmd::Prepare => {
                    self.prepare()
                        .await
                        .map(|(you, shares)| Report::Shares { idx, you, shares })
                }
                Cmd::Feed(m) => self.precompute(*m).map(|out| Report::Answer {
                    idx,
                    out: Box::new(out),
                }),
                Cmd::Go => self
                    .go()
                    .await
                    .map(|(round, at)| Report::Done { idx, round, at }),
                Cmd::Verify => self.verify().map(|()| Report::Verified),
                Cmd::Close => {
                    let _ = self.ws.close(None).await;
                    break;
                }
            };
            let report = report.unwrap_or_else(|error| Report::Failed { idx, error });
            if self.reports.send(report).is_err() {
                break;
            }
        }
    }

    fn new_patient(&mut self) -> Result<Patient, String> {
        Patient::with_answers(
            self.clock.now_ms(),
            &self.study,
            self.answers.clone(),
            None,
            None,
            &mut self.rng,
        )
        .map_err(|e| format!("cannot make a patient: {e}"))
    }

    async fn send(&mut self, msg: Message) -> Result<(), String> {
        self.ws
            .send(msg)
            .await
            .map_err(|e| format!("send failed: {e}"))
    }

    /// A whole round: join, roster, shares, delivery, partial sum, result.
    async fn e2e(&mut self) -> Result<(u64, Instant), String> {
        let mut p = self.new_patient()?;
        loop {
            while let Some(m) = p.poll_output() {
                self.send(to_message(m.encode())).await?;
            }
            while let Some(ev) = p.poll_event() {
                if let Some(end) = outcome(ev) {
                    let at = Instant::now();
                    let r = end?;
                    self.expected.check(&r)?;
                    return Ok((r.round, at));
                }
            }
            let frame = next_frame(&mut self.ws).await?;
            let _ = p.handle(self.clock.now_ms(), decode(&frame)?);
        }
    }

    /// Joins and turns the roster into the sealed shares, which are kept, not sent.
    async fn prepare(&mut self) -> Result<(u32, Shares), String> {
        let mut p = self.new_patient()?;
        let mut you = None;
        loop {
            // Events first: the roster's event (our index) precedes the shares it produced.
            while let Some(ev) = p.poll_event() {
                if let PatientEvent::RosterFrozen { you: me, .. } = ev {
                    you = Some(me);
                } else if let Some(end) = outcome(ev) {
                    end?;
                    return Err("the round ended before the roster".into());
                }
            }
            while let Some(m) = p.poll_output() {
                match m {
                    PatientToRelay::Shares(s) => {
                        let you = you.ok_or("shares before the roster")?;
                        self.prepared = Some(Prepared {
                            patient: p,
                            shares_msg: to_message(PatientToRelay::Shares(s.clone()).encode()),
                            steps: Vec::new(),
                            received: Vec::new(),
                        });
                        return Ok((you, s));
                    }
                    other => self.send(to_message(other.encode())).await?,
                }
            }
            let frame = next_frame(&mut self.ws).await?;
            let _ = p.handle(self.clock.now_ms(), decode(&frame)?);
        }
    }

    /// Hands the patient a frame the relay will send (delivery, checks, verdicts) and keeps
    /// its answer (verify, verdict, partial sum) for the timed round.
    fn precompute(&mut self, msg: RelayToPatient) -> Result<PatientToRelay, String> {
        let prep = self.prepared.as_mut().ok_or("not prepared")?;
        let Wire::Binary(expected) = msg.encode() else {
            return Err(format!("a prepared {} is not a binary frame", msg.kind()));
        };
        let kind = *expected.get(3).ok_or("a short frame")?;
        let what = msg.kind();
        prep.patient
            .handle(self.clock.now_ms(), msg)
            .map_err(|e| format!("precomputed {what} refused: {e}"))?;
        let out = prep
            .patient
            .poll_output()
            .ok_or_else(|| format!("no answer to the precomputed {what}"))?;
        prep.steps.push(Step {
            kind,
            expected,
            reply: to_message(out.encode()),
        });
        Ok(out)
    }

    /// Sends the prepared shares, answers each of the relay's frames with its prepared answer
    /// at once, waits for the result.
    async fn go(&mut self) -> Result<(u64, Instant), String> {
        let mut prep = self.prepared.take().ok_or("not prepared")?;
        if prep.steps.is_empty() {
            return Err("no prepared answers".into());
        }
        let shares = std::mem::replace(&mut prep.shares_msg, Message::binary(Vec::new()));
        self.send(shares).await?;
        let mut next = 0;
        let result = loop {
            let frame = next_frame(&mut self.ws).await?;
            let kind = match &frame {
                Message::Binary(b) => b.get(3).copied(),
                _ => None,
            };
            if let Some(step) = prep.steps.get_mut(next)
                && kind == Some(step.kind)
            {
                let reply = std::mem::replace(&mut step.reply, Message::binary(Vec::new()));
                self.send(reply).await?;
                prep.received.push(frame);
                next += 1;
                continue;
            }
            let _ = prep.patient.handle(self.clock.now_ms(), decode(&frame)?);
            let mut end = None;
            while let Some(ev) = prep.patient.poll_event() {
                if let Some(e) = outcome(ev) {
                    end = Some(e);
                }
            }
            if let Some(end) = end {
                break (Instant::now(), end);
            }
        };
        let (at, r) = result;
        let r = r?;
        self.expected.check(&r)?;
        self.prepared = Some(prep);
        Ok((r.round, at))
    }

    /// Checks that the relay sent exactly the frames (delivery, checks, verdicts) the
    /// prepared answers were computed from.
    fn verify(&mut self) -> Result<(), String> {
        let prep = self.prepared.take().ok_or("not prepared")?;
        if prep.received.len() != prep.steps.len() {
            return Err(format!(
                "{} of {} prepared frames were received",
                prep.received.len(),
                prep.steps.len()
            ));
        }
        for (frame, step) in prep.received.into_iter().zip(&prep.steps) {
            if *frame.into_data() != *step.expected {
                return Err(format!(
                    "the relay's frame of kind {} differs from the one the answers were prepared from",
                    step.kind
                ));
            }
        }
        Ok(())
    }
}
