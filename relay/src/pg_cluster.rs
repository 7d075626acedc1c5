//! A throw-away PostgreSQL cluster, for the relay's tests and the bench's `--cluster` (feature
//! `test-util`): initdb in a fresh directory, its own free port on 127.0.0.1, run as user
//! `postgres` (via runuser) when this process is root, stopped (and its directory deleted
//! unless kept) on drop, so on every exit path, panics included.
//!
//! Needs Debian's PostgreSQL (`/usr/lib/postgresql/*/bin`; scripts/setup.sh installs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A running PostgreSQL cluster with superuser `cohort` (trust authentication); stopped when
/// dropped.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    keep: bool,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// The newest `/usr/lib/postgresql/*/bin` that has `initdb`.
fn bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").is_file());
    found.sort();
    found.pop().ok_or_else(|| {
        "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb); run scripts/setup.sh"
            .to_owned()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl PgCluster {
    /// Creates and starts a cluster in `dir` (an existing, empty directory). On drop the
    /// cluster is stopped and `dir` deleted, unless `keep`.
    pub fn start(dir: PathBuf, keep: bool) -> Result<PgCluster, String> {
        let bin = bin_dir()?;
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("chown postgres {} failed", dir.display()));
            }
        }
        let mut pg = PgCluster {
            dir,
            bin,
            port: 0,
            keep,
        };
        let db = pg.path("db");
        pg.run(
            "initdb",
            &["-D", &db, "-A", "trust", "-U", "cohort", "-E", "UTF8"],
        )?;
        // A free port can be taken by another process before the server binds it (tests and
        // other builds run in parallel): try a few ports before failing.
        let mut failures = String::new();
        for _ in 0..3 {
            pg.port = free_port()?;
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
                pg.port,
                pg.dir.display()
            );
            let out = pg
                .command("pg_ctl")
                .args(["-D", &db, "-o", &opts, "-l", &pg.path("log"), "-w", "start"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("pg_ctl: {e}"))?;
            if out.status.success() {
                return Ok(pg);
            }
            failures.push_str(&String::from_utf8_lossy(&out.stdout));
            failures.push_str(&std::fs::read_to_string(pg.path("log")).unwrap_or_default());
        }
        Err(format!("pg_ctl start failed three times: {failures}"))
    }

    /// Creates and starts a cluster in a new directory `cohort-pg-{name}-…` of the system's
    /// temp dir, deleted on drop.
    pub fn start_temp(name: &str) -> Result<PgCluster, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("cohort-pg-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        PgCluster::start(dir, false)
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// The URL of database `postgres` as user `cohort`.
    pub fn url(&self) -> String {
        format!("postgres://cohort@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `tool` with `args` (stdin closed) and returns its stdout; its stdout and stderr
    /// are the error if it fails.
    fn run(&self, tool: &str, args: &[&str]) -> Result<Vec<u8>, String> {
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(out.stdout)
    }

    /// `pg_dump` of database `postgres` (schema and data) as text.
    pub fn dump(&self) -> Result<String, String> {
        let port = self.port.to_string();
        let out = self.run(
            "pg_dump",
            &["-h", "127.0.0.1", "-p", &port, "-U", "cohort", "postgres"],
        )?;
        String::from_utf8(out).map_err(|e| format!("pg_dump: {e}"))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.path("db"), "-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
