//! The relay under test, as a child process: started on 127.0.0.1:0 with its own temporary
//! certificates, data and web directories; its log captured (to a file, and parsed for the
//! `round relay path` lines); its CPU time and memory read from /proc.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How the relay is started.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// The `cohort-relay` binary.
    pub bin: PathBuf,
    /// A fresh directory for its certificates, data, web root and log.
    pub dir: PathBuf,
    /// `--study` specifications.
    pub studies: Vec<String>,
    /// `--study-file` files (a study's JSON form, e.g. a questionnaire).
    pub study_files: Vec<PathBuf>,
    /// `--max-connections`.
    pub max_connections: usize,
    /// `RUST_LOG` for the relay (its default, `info`, when `None`).
    pub log_filter: Option<String>,
    /// `--database` (PostgreSQL URL); `None`: the default SQLite store in `dir/data`.
    pub database: Option<String>,
    /// `--relay-id` (relays sharing one database need distinct ones).
    pub relay_id: Option<String>,
    /// A certificate directory shared with another relay (`None`: `dir/certs`).
    pub certs: Option<PathBuf>,
}

/// The relay's own timing of one round (see the `round relay path` log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathSample {
    /// Round id.
    pub round: u64,
    /// From the first accepted `shares` frame to the result queued for every member, in µs.
    pub us: u64,
}

/// A running relay child process; killed on drop.
pub struct RelayProc {
    child: Child,
    /// Its bound address.
    pub addr: SocketAddr,
    /// The CA certificate that signed its TLS certificate.
    pub ca: PathBuf,
    /// Where its stderr (the log) goes.
    pub log: PathBuf,
    paths: mpsc::Receiver<PathSample>,
    early: Vec<PathSample>,
    clk_tck: f64,
}

impl std::fmt::Debug for RelayProc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayProc")
            .field("pid", &self.child.id())
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Parses `key=value` out of a log line (plain, or with ANSI colour codes).
pub fn field(line: &str, key: &str) -> Option<u64> {
    let plain: String = strip_ansi(line);
    let pat = format!("{key}=");
    let mut rest = plain.as_str();
    while let Some(i) = rest.find(&pat) {
        let preceded_ok = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let after = &rest[i + pat.len()..];
        if preceded_ok {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            return digits.parse().ok();
        }
        rest = after;
    }
    None
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a `round relay path` line.
pub fn parse_path_line(line: &str) -> Option<PathSample> {
    if !line.contains("round relay path") {
        return None;
    }
    Some(PathSample {
        round: field(line, "round")?,
        us: field(line, "relay_path_us")?,
    })
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

impl RelayProc {
    /// Starts the relay and waits for its `listening on` line.
    pub fn start(opts: &RelayOptions) -> Result<RelayProc, String> {
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        let certs = opts.certs.clone().unwrap_or_else(|| opts.dir.join("certs"));
        for d in [certs.clone(), opts.dir.join("data"), opts.dir.join("web")] {
            std::fs::create_dir_all(&d).map_err(|e| io(&d.display().to_string(), e))?;
        }
        std::fs::write(
            opts.dir.join("web/index.html"),
            "<!doctype html><title>bench</title>",
        )
        .map_err(|e| io("web/index.html", e))?;
        let token: String = {
            let mut b = [0u8; 16];
            getrandom::fill(&mut b).map_err(|e| format!("getrandom: {e}"))?;
            b.iter().map(|x| format!("{x:02x}")).collect()
        };
        let mut cmd = Command::new(&opts.bin);
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--certs")
            .arg(&certs)
            .arg("--data")
            .arg(opts.dir.join("data"))
            .arg("--web")
            .arg(opts.dir.join("web"))
            .arg("--max-connections")
            .arg(opts.max_connections.to_string())
            .env("COHORT_ADMIN_TOKEN", token)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &opts.log_filter {
            Some(f) => {
                cmd.env("RUST_LOG", f);
            }
            None => {
                cmd.env_remove("RUST_LOG");
            }
        }
        for s in &opts.studies {
            cmd.arg("--study").arg(s);
        }
        for f in &opts.study_files {
            cmd.arg("--study-file").arg(f);
        }
        if let Some(db) = &opts.database {
            cmd.arg("--database").arg(db);
        }
        if let Some(id) = &opts.relay_id {
            cmd.arg("--relay-id").arg(id);
        }
        cmd.env_remove("COHORT_DATABASE_URL");
        // Limits meant for the open internet that a one-box bench would trip over: every
        // patient comes from 127.0.0.1, and a small cohort runs hundreds of rounds a second.
        // Passed only if this relay has them (older relays have no such limits).
        let help = Command::new(&opts.bin)
            .arg("--help")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let cap = opts.max_connections.to_string();
        for (flag, value) in [
            ("--max-connections-per-ip", cap.as_str()),
            ("--max-messages-per-second", "1000000"),
            ("--max-patients-per-study", "10000"),
        ] {
            if help.contains(flag) {
                cmd.arg(flag).arg(value);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", opts.bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (url_tx, url_rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on https://") {
                    let _ = url_tx.send(url.trim().to_string());
                }
            }
        });
        let log = opts.dir.join("relay.log");
        let mut file = std::fs::File::create(&log).map_err(|e| io("relay.log", e))?;
        let (path_tx, paths) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = file.write_all(line.as_bytes());
                        if let Some(p) = parse_path_line(&line) {
                            let _ = path_tx.send(p);
                        }
                    }
                }
            }
            let _ = file.flush();
        });
        let addr = match url_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(hostport) => hostport
                .parse::<SocketAddr>()
                .map_err(|e| format!("relay printed an unusable address {hostport:?}: {e}"))?,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("the relay did not start; its log:\n{tail}"));
            }
        };
        Ok(RelayProc {
            child,
            addr,
            ca: certs.join(cohort_relay::certs::CA_FILE),
            log,
            paths,
            early: Vec::new(),
            clk_tck: clk_tck(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time used so far (user + system, all threads), in ms: the sum of the threads'
    /// scheduler run time (ns resolution) when the kernel shows it, else utime + stime (one
    /// clock tick resolution). The relay's threads (main, tokio workers) live as long as it.
    pub fn cpu_ms(&self) -> Option<f64> {
        sched_ms_of(self.pid()).or_else(|| cpu_ms_of(self.pid(), self.clk_tck))
    }

    /// `(VmRSS, VmHWM)` in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let get = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((get("VmRSS:")?, get("VmHWM:")?))
    }

    /// Open file descriptors of the relay.
    pub fn open_fds(&self) -> Option<usize> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .ok()
            .map(|d| d.count())
    }

    /// Waits (at most `timeout`) for the relay's timing of `round`.
    pub async fn path_of(&mut self, round: u64, timeout: Duration) -> Option<u64> {
        let end = Instant::now() + timeout;
        loop {
            while let Ok(p) = self.paths.try_recv() {
                self.early.push(p);
            }
            if let Some(i) = self.early.iter().position(|p| p.round == round) {
                return Some(self.early.swap_remove(i).us);
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The relay's timing of `round` if it has logged it (no waiting).
    pub fn take_path(&mut self, round: u64) -> Option<u64> {
        while let Ok(p) = self.paths.try_recv() {
            self.early.push(p);
        }
        let i = self.early.iter().position(|p| p.round == round)?;
        Some(self.early.swap_remove(i).us)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for RelayProc {
    /// Stops the relay as an operator would (SIGTERM, so it shuts down cleanly and tools
    /// such as valgrind wrapping it can write their output), SIGKILL after 10 s.
    fn drop(&mut self) {
        let termed = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of `se.sum_exec_runtime` over a process's live threads, in ms.
pub fn sched_ms_of(pid: u32) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(task.path().join("sched")) else {
            continue;
        };
        let v = text
            .lines()
            .find(|l| l.starts_with("se.sum_exec_runtime"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(v) = v {
            total += v;
            any = true;
        }
    }
    any.then_some(total)
}

/// utime + stime of a process from /proc/PID/stat, in ms.
pub fn cpu_ms_of(pid: u32, clk_tck: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 1000.0 / clk_tck)
}

/// The 1-minute load average.
pub fn load1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft and hard limits on open files of this process.
pub fn nofile_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Some((*nums.first()?, *nums.get(1)?))
}

/// Makes sure this process (and so the relay it starts) may open `need` files: raises the soft
/// limit up to the hard one with `prlimit` when needed.
pub fn ensure_nofile(need: u64) -> Result<(), String> {
    let Some((soft, hard)) = nofile_limits() else {
        return Ok(());
    };
    if soft >= need {
        return Ok(());
    }
    if hard < need {
        return Err(format!(
            "need {need} open files but the hard limit is {hard}; raise it (e.g. as root: ulimit -Hn {need})"
        ));
    }
    let ok = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={hard}:{hard}"))
        .status()
        .is_ok_and(|s| s.success());
    match nofile_limits() {
        Some((soft, _)) if ok && soft >= need => Ok(()),
        _ => Err(format!(
            "need {need} open files but the soft limit is {soft}; run `ulimit -n {hard}` first"
        )),
    }
}

/// A fresh temporary directory for one relay.
pub fn fresh_dir(base: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_lines_plain_and_coloured() {
        let plain = "2026-11-25T13:00:00.1Z  INFO cohort_relay::registry: round relay path study=bench3 round=12 relay_path_us=1834";
        assert_eq!(
            parse_path_line(plain),
            Some(PathSample {
                round: 12,
                us: 1834
            })
        );
        let coloured = "\u{1b}[32m INFO\u{1b}[0m \u{1b}[2mcohort_relay::registry\u{1b}[0m\u{1b}[2m:\u{1b}[0m round relay path \u{1b}[3mstudy\u{1b}[0m\u{1b}[2m=\u{1b}[0mbench3 \u{1b}[3mround\u{1b}[0m\u{1b}[2m=\u{1b}[0m4 \u{1b}[3mrelay_path_us\u{1b}[0m\u{1b}[2m=\u{1b}[0m99";
        assert_eq!(
            parse_path_line(coloured),
            Some(PathSample { round: 4, us: 99 })
        );
        assert_eq!(parse_path_line("round completed round=3"), None);
        assert_eq!(field("xround=5 round=6", "round"), Some(6));
    }

    #[test]
    fn reads_own_cpu_time() {
        assert!(cpu_ms_of(std::process::id(), 100.0).is_some());
        assert!(nofile_limits().is_some());
    }
}
