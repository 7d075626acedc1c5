//! A throw-away PostgreSQL cluster for tests: initdb in a temp dir, its own free port on
//! 127.0.0.1, run as user `postgres` (via runuser) when the test runs as root, stopped and
//! deleted on drop (so on every exit path, panics included).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A running PostgreSQL cluster; stopped when dropped.
pub(crate) struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").is_file());
    found.sort();
    found.pop().expect(
        "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb); run scripts/setup.sh",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgCluster {
    /// Creates and starts a cluster with superuser `cohort` (trust authentication).
    pub(crate) fn start(name: &str) -> PgCluster {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "cohort-pg-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown postgres failed");
        }
        let mut cluster = PgCluster { dir, bin, port: 0 };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.path("db"),
                "-A",
                "trust",
                "-U",
                "cohort",
                "-E",
                "UTF8",
            ],
        );
        // A free port can be taken by another process before the server binds it (tests and
        // other builds run in parallel): try a few ports before failing.
        let mut failures = String::new();
        for _ in 0..3 {
            cluster.port = free_port();
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
                cluster.port,
                cluster.dir.display()
            );
            let out = cluster
                .command("pg_ctl")
                .args(["-D", &cluster.path("db"), "-o", &opts])
                .args(["-l", &cluster.path("log"), "-w", "start"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if out.status.success() {
                return cluster;
            }
            failures.push_str(&String::from_utf8_lossy(&out.stdout));
            failures.push_str(&std::fs::read_to_string(cluster.path("log")).unwrap_or_default());
        }
        panic!("pg_ctl start failed three times: {failures}");
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

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of database `postgres` as user `cohort`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://cohort@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_dump` of database `postgres` (schema and data) as text.
    pub(crate) fn dump(&self) -> String {
        let out = self
            .command("pg_dump")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "cohort",
                "postgres",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
