//! `--cluster`: the deployment of docs/DEPLOY.md on this box — a throw-away PostgreSQL, two
//! `cohort-relay --database` processes and HAProxy with deploy/haproxy.cfg in front (started
//! as relay/tests/cluster.rs and deploy/README.md do) — and the same rounds run twice per
//! configuration: through HAProxy (`/ws?study=ID`, TLS at HAProxy, re-encrypted to the
//! relays) and then direct to the relay that ran them. One JSON line each, `"via"` telling
//! which.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cohort_relay::pg_cluster::PgCluster;

use crate::patients::{client_tls, client_ws_config, connect_path, study_spec_with};
use crate::relay_proc::{RelayOptions, RelayProc, ensure_nofile, fresh_dir, load1};
use crate::{Common, RoundsConfig, RoundsReport, Target, measure};

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// HAProxy with deploy/haproxy.cfg, as in deploy/README.md; killed on drop.
pub struct Haproxy {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    run: PathBuf,
}

impl std::fmt::Debug for Haproxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Haproxy")
            .field("pid", &self.child.id())
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// deploy/haproxy.cfg: `$COHORT_HAPROXY_CFG`, else the one of the source tree this bench was
/// built from.
fn haproxy_cfg() -> PathBuf {
    std::env::var_os("COHORT_HAPROXY_CFG")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg"))
}

impl Haproxy {
    /// Starts HAProxy in front of `relays` (TLS material from `certs`, the relays' shared
    /// certificate directory) and waits until it reports every relay up.
    pub fn start(dir: &Path, certs: &Path, relays: [SocketAddr; 2]) -> Result<Haproxy, String> {
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        let cfg = haproxy_cfg();
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).map_err(|e| io("tls", e))?;
        // HAProxy's certificate: issued by the same local CA as the relays'.
        let mut pem = std::fs::read_to_string(certs.join(cohort_relay::certs::CERT_FILE))
            .map_err(|e| io("cert.pem", e))?;
        pem.push_str(
            &std::fs::read_to_string(certs.join(cohort_relay::certs::KEY_FILE))
                .map_err(|e| io("key.pem", e))?,
        );
        std::fs::write(tls.join("haproxy.pem"), pem).map_err(|e| io("haproxy.pem", e))?;
        std::fs::copy(
            certs.join(cohort_relay::certs::CA_FILE),
            tls.join(cohort_relay::certs::CA_FILE),
        )
        .map_err(|e| io("ca.pem", e))?;
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let envs = [
            ("COHORT_LISTEN", addr.to_string()),
            ("COHORT_TLS", tls.display().to_string()),
            ("COHORT_RUN", dir.display().to_string()),
            ("COHORT_RELAY1", relays[0].to_string()),
            ("COHORT_RELAY2", relays[1].to_string()),
        ];
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .envs(envs.clone())
            .output()
            .map_err(|e| format!("haproxy is not installed ({e}); run scripts/setup.sh"))?;
        if !check.status.success() {
            return Err(format!(
                "haproxy -c -f {}: {}",
                cfg.display(),
                String::from_utf8_lossy(&check.stderr)
            ));
        }
        let log = dir.join("haproxy.log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .envs(envs)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("haproxy.out")).map_err(|e| io("out", e))?)
            .stderr(std::fs::File::create(&log).map_err(|e| io("haproxy.log", e))?)
            .spawn()
            .map_err(|e| format!("cannot start haproxy: {e}"))?;
        let mut h = Haproxy {
            child,
            addr,
            run: dir.to_path_buf(),
        };
        // Every server of every backend UP (so that no patient lands on a relay HAProxy
        // would not route the study to once the other one comes up).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if h.stat_not_up().is_some_and(|down| down.is_empty()) {
                return Ok(h);
            }
            if !matches!(h.child.try_wait(), Ok(None)) || Instant::now() > deadline {
                return Err(format!(
                    "haproxy did not report its relays up: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `backend/server` of every server not UP, from `show stat` on the stats socket; `None`
    /// while the socket does not answer.
    fn stat_not_up(&self) -> Option<Vec<String>> {
        let mut s = std::os::unix::net::UnixStream::connect(self.run.join("haproxy.sock")).ok()?;
        s.write_all(b"show stat\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        servers_not_up(&out)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// `backend/server status` of every server not UP in HAProxy's `show stat` CSV; `None` if it
/// lists no server.
fn servers_not_up(stat: &str) -> Option<Vec<String>> {
    let mut down = Vec::new();
    let mut servers = 0;
    for line in stat.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() > 17 && f[1] != "FRONTEND" && f[1] != "BACKEND" {
            servers += 1;
            if f[17] != "UP" {
                down.push(format!("{}/{} {}", f[0], f[1], f[17]));
            }
        }
    }
    (servers > 0).then_some(down)
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `--cluster` configuration: PostgreSQL, two relays, HAProxy; the rounds through
/// HAProxy, then the same rounds direct to the relay that ran them. Returns the two reports
/// (`via` = `haproxy`, then `direct`).
pub async fn run_cluster(common: &Common, cfg: &RoundsConfig) -> Result<[RoundsReport; 2], String> {
    let n = cfg.patients;
    if n < 3 {
        return Err("at least 3 patients (the minimum cohort)".into());
    }
    if cfg.questions != 1 {
        return Err("--cluster runs the one-question study only".into());
    }
    // Patients' sockets, HAProxy's two per patient (it inherits this limit), the relays'.
    ensure_nofile(2 * n as u64 + 256)?;
    let load0 = load1();
    let base = fresh_dir(&common.tmp, &format!("cluster{n}"))?;
    let pg_dir = base.join("pg");
    std::fs::create_dir_all(&pg_dir).map_err(|e| format!("{}: {e}", pg_dir.display()))?;
    let pg = PgCluster::start(pg_dir, common.keep)?;
    let certs = base.join("certs");
    let ids = ["relay-1", "relay-2"];
    let mut relays = Vec::new();
    // One after the other: the first generates the CA and certificate, the second loads them.
    for id in ids {
        relays.push(RelayProc::start(&RelayOptions {
            bin: common.relay_bin.clone(),
            dir: base.join(id),
            studies: vec![study_spec_with(n, cfg.proofs)],
            study_files: Vec::new(),
            max_connections: n + 64,
            log_filter: common.log_filter.clone(),
            database: Some(pg.url()),
            relay_id: Some(id.into()),
            certs: Some(certs.clone()),
        })?);
    }
    let hap = Haproxy::start(&base, &certs, [relays[0].addr, relays[1].addr])?;
    let tls = client_tls(&relays[0].ca)?;
    let study = format!("bench{n}");
    let ws_path = format!("/ws?study={study}");
    // One socket through HAProxy end to end (TLS, re-encryption, upgrade) before the clock.
    connect_path(hap.addr, &ws_path, tls.clone(), client_ws_config())
        .await
        .map_err(|e| format!("through haproxy: {e}"))?;

    let (r1, r2) = relays.split_at_mut(1);
    let mut target = Target {
        label: format!("{study} haproxy"),
        addr: hap.addr,
        ws_path: ws_path.clone(),
        relays: vec![&mut r1[0], &mut r2[0]],
        owner: None,
        proxy_pid: Some(hap.pid()),
    };
    let mut via_hap = measure(common, cfg, &mut target, tls.clone()).await?;
    via_hap.load.0 = load0;
    via_hap.via = Some("haproxy");
    let owner = via_hap.ran_on;
    drop(target);

    // Direct, to the relay that holds the study's lease (another one would answer 1013).
    let relay = &mut relays[owner];
    let addr = relay.addr;
    let mut target = Target {
        label: format!("{study} direct"),
        addr,
        ws_path,
        relays: vec![relay],
        owner: None,
        proxy_pid: None,
    };
    let mut direct = measure(common, cfg, &mut target, tls).await?;
    drop(target);
    direct.via = Some("direct");
    direct.ran_on = owner;
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    via_hap.relay_ids = ids.clone();
    direct.relay_ids = ids;
    drop(hap);
    drop(relays);
    drop(pg);
    if !common.keep {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok([via_hap, direct])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(px: &str, sv: &str, status: &str) -> String {
        let mut f = vec![""; 20];
        f[0] = px;
        f[1] = sv;
        f[17] = status;
        f.join(",")
    }

    #[test]
    fn reads_server_states_from_show_stat() {
        let head = "# pxname,svname,qcur";
        let all_up = [
            head.to_string(),
            row("cohort", "FRONTEND", "OPEN"),
            row("relays_any", "relay1", "UP"),
            row("relays_any", "relay2", "UP"),
            row("relays_any", "BACKEND", "UP"),
        ]
        .join("\n");
        assert_eq!(servers_not_up(&all_up), Some(vec![]));
        let one_down = all_up.replace(
            &row("relays_any", "relay2", "UP"),
            &row("relays_any", "relay2", "DOWN"),
        );
        assert_eq!(
            servers_not_up(&one_down),
            Some(vec!["relays_any/relay2 DOWN".to_string()])
        );
        assert_eq!(servers_not_up(head), None);
    }
}
