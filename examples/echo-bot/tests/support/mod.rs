//! What the tests that run the echo-bot binary share: the process, a free port, readiness, and
//! a fake API that answers every platform.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bot_core::testing::fake_api::{FakeRequest, FakeResponse};
use http::StatusCode;

/// The bot process, killed when the test ends however it ends.
pub(crate) struct Bot(Child);

impl Bot {
    /// Starts echo-bot with only `vars` (and `PATH`) in its environment.
    pub(crate) fn start(vars: &[(&str, &str)]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_echo-bot"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("echo-bot starts");
        Self(child)
    }

    /// Waits until `/readyz` at `addr` answers 200; fails at once if the process exits.
    pub(crate) async fn wait_ready(&mut self, http: &reqwest::Client, addr: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            if let Some(status) = self.0.try_wait().expect("echo-bot's status") {
                panic!("echo-bot exited before it was ready: {status}");
            }
            assert!(Instant::now() < deadline, "echo-bot did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on (for the bot's `BOT_ADDR`).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The answer of every platform's API: `{}`, but for Discord's `GET /gateway/bot` (the gateway
/// of the application whose token asks) and command registrations (none registered before).
pub(crate) fn answer(request: &FakeRequest, gateways: &[(&str, String)]) -> FakeResponse {
    let json = |body| FakeResponse::json(StatusCode::OK, &body);
    if request.path == "/gateway/bot" {
        let token = request.header("authorization").unwrap_or_default();
        let url = gateways.iter().find(|(t, _)| token == format!("Bot {t}"));
        return match url {
            Some((_, url)) => json(serde_json::json!({"url": url, "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                    "max_concurrency": 1}})),
            None => FakeResponse::json(StatusCode::UNAUTHORIZED, &serde_json::json!({})),
        };
    }
    if request.path.ends_with("/commands") {
        return json(serde_json::json!([]));
    }
    json(serde_json::json!({}))
}
