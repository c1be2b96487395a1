//! A private `redis-server` for tests that stop the store mid-run: never the shared one on
//! :6379, which other tests and helpers use at the same time.
//!
//! [`RedisServer::start`] runs `redis-server` on a free port of 127.0.0.1 without persistence;
//! dropping the value stops it. The binary comes from `REDIS_SERVER_BIN`, the `PATH` or
//! `/usr/bin`; without it the test fails, saying so (scripts/ensure-redis.sh installs it).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private server, stopped on drop.
#[derive(Debug)]
pub(crate) struct RedisServer {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with nothing in it.
    ///
    /// # Panics
    ///
    /// When the binary is missing or the server does not listen within 30 s.
    pub(crate) fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            bin: find_bin(),
            port,
            child: None,
        };
        server.start_again();
        server
    }

    /// The URL of this server.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: as a crash would) and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (no persistence).
    pub(crate) fn start_again(&mut self) {
        let child = Command::new(&self.bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "the private redis-server on port {} does not listen",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `REDIS_SERVER_BIN`, or `redis-server` on the `PATH`, in `/usr/bin` or `/usr/local/bin`.
fn find_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("REDIS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "this test runs a private redis-server: none on the PATH or in /usr/bin; install it \
             (scripts/ensure-redis.sh does) or set REDIS_SERVER_BIN"
        )
    })
}
