//! A private `nats-server` with JetStream for fault tests that restart the server: never the
//! shared one on :4222, which other tests use at the same time.
//!
//! [`NatsServer::start`] runs `nats-server -js` on a free port of 127.0.0.1 with its store in a
//! fresh temporary directory; dropping the value stops it and removes the directory. The binary
//! comes from `NATS_SERVER_BIN`, the `PATH` or `/usr/sbin`; without it the test fails, saying so.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private server, stopped and deleted on drop.
#[derive(Debug)]
pub(crate) struct NatsServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with an empty store.
    ///
    /// # Panics
    ///
    /// When the binary is missing or the server does not listen within 30 s.
    pub(crate) fn start(name: &str) -> Self {
        let bin = find_bin();
        let dir = std::env::temp_dir().join(format!(
            "botrt-nats-{name}-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the store directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            bin,
            dir,
            port,
            child: None,
        };
        server.start_again();
        server
    }

    /// The URL of this server.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM: it flushes its store) and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub(crate) fn start_again(&mut self) {
        let child = Command::new(&self.bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
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
                "the private nats-server on port {} does not listen",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `NATS_SERVER_BIN`, or `nats-server` on the `PATH`, or `/usr/sbin/nats-server`.
fn find_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "this fault test runs a private nats-server: none on the PATH or in /usr/sbin; \
             install it (scripts/ensure-nats.sh does) or set NATS_SERVER_BIN"
        )
    })
}
