//! A private PostgreSQL cluster for fault tests that restart or stop the server: never the shared
//! one on :5432, which other tests use at the same time.
//!
//! [`PgCluster::start`] runs `initdb` into a fresh temporary directory and starts the server on a
//! free port, listening on 127.0.0.1 only, with its socket in that directory; dropping the value
//! stops it and removes the directory. When run as root, the server's tools run as `postgres`
//! (`runuser -u postgres`), since PostgreSQL refuses to run as root. The binaries come from
//! `PG_BIN` or the newest `/usr/lib/postgresql/*/bin`; without them the test fails, saying so.
//!
//! Plain `std`, so that tests of any crate can include it with `#[path = ...] mod cluster;`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A running private cluster, stopped and deleted on drop.
#[derive(Debug)]
pub(crate) struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PgCluster {
    /// Initialises and starts a cluster.
    ///
    /// # Panics
    ///
    /// When the PostgreSQL binaries are missing or the cluster does not start: the test cannot
    /// run without it and must not pass.
    pub(crate) fn start(name: &str) -> Self {
        Self::start_with(name, false)
    }

    /// As [`PgCluster::start`], with commits that wait for their WAL to be written out
    /// (`synchronous_commit = on`; `fsync` stays off): what a crash of the server alone (an
    /// immediate shutdown, not the machine's) cannot take back, as on a production server.
    #[allow(dead_code)] // Not every test binary that includes this module crashes the server.
    pub(crate) fn start_committing(name: &str) -> Self {
        Self::start_with(name, true)
    }

    fn start_with(name: &str, synchronous_commit: bool) -> Self {
        let bin = find_bin();
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "botrt-pg-{name}-{}-{}",
            std::process::id(),
            fastish_unique()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        if as_postgres {
            run_checked(Command::new("chown").arg("postgres:").arg(&dir));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = Self {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = cluster.data();
        cluster.tool(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
            ],
        );
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = {}\nfull_page_writes = off\nmax_connections = 100\n",
            cluster.dir.display(),
            if synchronous_commit { "on" } else { "off" }
        );
        cluster.append_conf(&conf);
        cluster.pg_ctl(&["start", "-w", "-t", "60"]);
        cluster.wait_accepting(Duration::from_secs(60));
        cluster
    }

    /// The URL of database `postgres` on this cluster.
    pub(crate) fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=2",
            self.port
        )
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `pg_ctl -m fast restart`: every connection is cut, the server comes back on the same port.
    pub(crate) fn restart_fast(&self) {
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60"]);
        self.wait_accepting(Duration::from_secs(60));
    }

    /// `pg_ctl -m immediate restart`: the server stops as in a crash (no checkpoint, every
    /// connection cut) and recovers from its WAL when it starts again on the same port.
    #[allow(dead_code)] // Not every test binary that includes this module crashes the server.
    pub(crate) fn restart_immediate(&self) {
        self.pg_ctl(&["restart", "-m", "immediate", "-w", "-t", "60"]);
        self.wait_accepting(Duration::from_secs(60));
    }

    /// `pg_ctl -m fast stop`.
    pub(crate) fn stop_fast(&self) {
        self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"]);
    }

    /// Starts it again after [`PgCluster::stop_fast`].
    pub(crate) fn start_again(&self) {
        self.pg_ctl(&["start", "-w", "-t", "60"]);
        self.wait_accepting(Duration::from_secs(60));
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn append_conf(&self, text: &str) {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .expect("open postgresql.conf");
        file.write_all(text.as_bytes())
            .expect("write postgresql.conf");
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data();
        let log = self.dir.join("server.log");
        let mut all = vec![
            "-D",
            data.to_str().expect("utf-8 path"),
            "-l",
            log.to_str().expect("utf-8 path"),
        ];
        all.extend_from_slice(args);
        self.tool("pg_ctl", &all);
    }

    fn tool(&self, name: &str, args: &[&str]) -> Output {
        let program = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args).current_dir(&self.dir);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            panic!(
                "{name} {args:?} failed ({}):\n{}{}\nserver log:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    fn wait_accepting(&self, deadline: Duration) {
        let until = Instant::now() + deadline;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < until,
                "the private PostgreSQL cluster on port {} does not accept connections",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let program = self.bin.join("pg_ctl");
        let args = [
            "-D",
            data.to_str().unwrap_or_default(),
            "stop",
            "-m",
            "immediate",
            "-w",
        ];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `PG_BIN`, or the newest `/usr/lib/postgresql/<version>/bin` that has `pg_ctl`.
fn find_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.join("pg_ctl").exists(),
            "PG_BIN={} has no pg_ctl",
            bin.display()
        );
        return bin;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "this fault test needs the PostgreSQL server binaries (initdb, pg_ctl) to run a \
             private cluster: none in /usr/lib/postgresql/*/bin; install postgresql or set PG_BIN"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run_checked(cmd: &mut Command) {
    let status = cmd.status().expect("run a command");
    assert!(status.success(), "{cmd:?} failed: {status}");
}

fn fastish_unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
