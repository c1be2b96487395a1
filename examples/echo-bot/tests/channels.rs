//! One echo-bot process serving two LINE channels, two Messenger pages and two Discord
//! applications (configured by environment variables, as in production): each event is answered
//! through its own channel's token, and a webhook that names one channel but is signed with
//! another's secret is refused.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bot_core::Secret;
use bot_core::testing::fake_api::{FakeApi, FakeRequest, FakeResponse};
use bot_discord::testing::FakeGateway;
use bot_line::testing::WebhookBuilder as LineWebhook;
use bot_messenger::testing::WebhookBuilder as MessengerWebhook;
use http::StatusCode;

const LINE_A: (&str, &str, &str) = ("U0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a", "secret-a", "token-a");
const LINE_B: (&str, &str, &str) = ("U1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b", "secret-b", "token-b");
const APP_SECRET: &str = "app-secret";
const PAGE_1: (&str, &str) = ("1000000000001", "page-token-1");
const PAGE_2: (&str, &str) = ("1000000000002", "page-token-2");
const DISCORD_A: (&str, &str) = ("1100000000000000001", "discord-token-a");
const DISCORD_B: (&str, &str) = ("1100000000000000002", "discord-token-b");

/// The bot process, killed when the test ends however it ends.
struct Bot(Child);

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(api: &str, addr: &str) -> Bot {
    let child = Command::new(env!("CARGO_BIN_EXE_echo-bot"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BOT_ADDR", addr)
        .env("LINE_API_BASE", api)
        .env("LINE_CHANNEL_SECRET", LINE_A.1)
        .env("LINE_CHANNEL_ACCESS_TOKEN", LINE_A.2)
        .env("LINE_DESTINATION", LINE_A.0)
        .env("LINE_CHANNEL_2_DESTINATION", LINE_B.0)
        .env("LINE_CHANNEL_2_SECRET", LINE_B.1)
        .env("LINE_CHANNEL_2_ACCESS_TOKEN", LINE_B.2)
        .env("MESSENGER_API_BASE", api)
        .env("MESSENGER_APP_SECRET", APP_SECRET)
        .env("MESSENGER_VERIFY_TOKEN", "verify")
        .env("MESSENGER_PAGE_ACCESS_TOKEN", PAGE_1.1)
        .env("MESSENGER_PAGE_ID", PAGE_1.0)
        .env("MESSENGER_PAGE_2_ID", PAGE_2.0)
        .env("MESSENGER_PAGE_2_ACCESS_TOKEN", PAGE_2.1)
        .env("DISCORD_API_BASE", api)
        .env("DISCORD_TOKEN", DISCORD_A.1)
        .env("DISCORD_APPLICATION_ID", DISCORD_A.0)
        .env("DISCORD_APPLICATION_2_ID", DISCORD_B.0)
        .env("DISCORD_APPLICATION_2_TOKEN", DISCORD_B.1)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("echo-bot starts");
    Bot(child)
}

async fn wait_ready(http: &reqwest::Client, addr: &str) {
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
        assert!(Instant::now() < deadline, "echo-bot did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The answer of every platform's API: `{}`, but for Discord's `GET /gateway/bot` (the gateway
/// of the application whose token asks) and command registrations (none registered before).
fn answer(request: &FakeRequest, gateways: &[(&str, String)]) -> FakeResponse {
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

#[tokio::test]
async fn each_event_is_answered_through_its_own_channels_token() {
    let discord_a = FakeGateway::start(DISCORD_A.1).await.unwrap();
    let discord_b = FakeGateway::start(DISCORD_B.1).await.unwrap();
    let gateways = [
        (DISCORD_A.1, discord_a.url()),
        (DISCORD_B.1, discord_b.url()),
    ];
    let api = FakeApi::start(move |request| answer(request, &gateways))
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _bot = start(&api.url(), &addr);
    let http = reqwest::Client::new();
    wait_ready(&http, &addr).await;

    let line = format!("http://{addr}/line/webhook");
    for (destination, secret, _) in [LINE_A, LINE_B] {
        let status = LineWebhook::new()
            .destination(destination)
            .text("Uuser", &format!("to {destination}"))
            .sign(&Secret::new(secret))
            .post(&line)
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    // Names channel B but is signed with A's secret: refused, nothing answered.
    let forged = LineWebhook::new()
        .destination(LINE_B.0)
        .text("Uuser", "forged")
        .sign(&Secret::new(LINE_A.1))
        .post(&line)
        .await
        .unwrap();
    assert_eq!(forged, 401);
    let unknown = LineWebhook::new()
        .destination("U9999")
        .text("Uuser", "nobody")
        .sign(&Secret::new(LINE_A.1))
        .post(&line)
        .await
        .unwrap();
    assert_eq!(unknown, 401);

    let messenger = format!("http://{addr}/messenger/webhook");
    let status = MessengerWebhook::new()
        .page_id(PAGE_1.0)
        .text("psid-1", "to page 1")
        .page_id(PAGE_2.0)
        .entry()
        .text("psid-2", "to page 2")
        .sign(&Secret::new(APP_SECRET))
        .post(&messenger)
        .await
        .unwrap();
    assert_eq!(status, 200);

    // Each Discord application's shard gets a message; its echo goes out with its own token.
    for (gateway, app) in [(&discord_a, DISCORD_A), (&discord_b, DISCORD_B)] {
        gateway.wait_for_readies(1).await;
        let message = serde_json::json!({"id": "1180000000000000001", "channel_id": "100",
            "author": {"id": "7", "username": "someone"}, "content": format!("to {}", app.0)});
        gateway.dispatch("MESSAGE_CREATE", message).await;
    }

    let needles = [
        format!("to {}", LINE_A.0),
        format!("to {}", LINE_B.0),
        "to page 1".to_owned(),
        "to page 2".to_owned(),
        format!("to {}", DISCORD_A.0),
        format!("to {}", DISCORD_B.0),
    ];
    let answered = |api: &FakeApi| {
        let calls = api.calls();
        let body = |c: &bot_core::testing::fake_api::Call| {
            String::from_utf8_lossy(&c.request.body).into_owned()
        };
        let all = needles
            .iter()
            .all(|needle| calls.iter().any(|c| body(c).contains(needle.as_str())));
        all.then_some(calls)
    };
    let calls = api.wait_until("every answer", answered).await;
    let token_of = |needle: &str| {
        let found: Vec<_> = calls
            .iter()
            .filter(|c| String::from_utf8_lossy(&c.request.body).contains(needle))
            .map(|c| {
                c.request
                    .header("authorization")
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(found.len(), 1, "one answer to {needle:?}, got {found:?}");
        found[0].clone()
    };
    let bearer = |token: &str| format!("Bearer {token}");
    assert_eq!(token_of(&needles[0]), bearer(LINE_A.2));
    assert_eq!(token_of(&needles[1]), bearer(LINE_B.2));
    assert_eq!(token_of(&needles[2]), bearer(PAGE_1.1));
    assert_eq!(token_of(&needles[3]), bearer(PAGE_2.1));
    assert_eq!(token_of(&needles[4]), format!("Bot {}", DISCORD_A.1));
    assert_eq!(token_of(&needles[5]), format!("Bot {}", DISCORD_B.1));
    assert!(
        calls.iter().all(|c| {
            let body = String::from_utf8_lossy(&c.request.body);
            !body.contains("forged") && !body.contains("nobody")
        }),
        "refused webhooks were not answered"
    );
}
