//! One echo-bot process serving two LINE channels, two Messenger pages and two Discord
//! applications (configured by environment variables, as in production): each event is answered
//! through its own channel's token, and a webhook that names one channel but is signed with
//! another's secret is refused.

mod support;

use bot_core::Secret;
use bot_core::testing::fake_api::FakeApi;
use bot_discord::testing::FakeGateway;
use bot_line::testing::WebhookBuilder as LineWebhook;
use bot_messenger::testing::WebhookBuilder as MessengerWebhook;
use support::{Bot, answer, free_port};

const LINE_A: (&str, &str, &str) = ("U0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a", "secret-a", "token-a");
const LINE_B: (&str, &str, &str) = ("U1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b", "secret-b", "token-b");
const APP_SECRET: &str = "app-secret";
const PAGE_1: (&str, &str) = ("1000000000001", "page-token-1");
const PAGE_2: (&str, &str) = ("1000000000002", "page-token-2");
const DISCORD_A: (&str, &str) = ("1100000000000000001", "discord-token-a");
const DISCORD_B: (&str, &str) = ("1100000000000000002", "discord-token-b");

fn start(api: &str, addr: &str) -> Bot {
    Bot::start(&[
        ("BOT_ADDR", addr),
        ("LINE_API_BASE", api),
        ("LINE_CHANNEL_SECRET", LINE_A.1),
        ("LINE_CHANNEL_ACCESS_TOKEN", LINE_A.2),
        ("LINE_DESTINATION", LINE_A.0),
        ("LINE_CHANNEL_2_DESTINATION", LINE_B.0),
        ("LINE_CHANNEL_2_SECRET", LINE_B.1),
        ("LINE_CHANNEL_2_ACCESS_TOKEN", LINE_B.2),
        ("MESSENGER_API_BASE", api),
        ("MESSENGER_APP_SECRET", APP_SECRET),
        ("MESSENGER_VERIFY_TOKEN", "verify"),
        ("MESSENGER_PAGE_ACCESS_TOKEN", PAGE_1.1),
        ("MESSENGER_PAGE_ID", PAGE_1.0),
        ("MESSENGER_PAGE_2_ID", PAGE_2.0),
        ("MESSENGER_PAGE_2_ACCESS_TOKEN", PAGE_2.1),
        ("DISCORD_API_BASE", api),
        ("DISCORD_TOKEN", DISCORD_A.1),
        ("DISCORD_APPLICATION_ID", DISCORD_A.0),
        ("DISCORD_APPLICATION_2_ID", DISCORD_B.0),
        ("DISCORD_APPLICATION_2_TOKEN", DISCORD_B.1),
    ])
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
    let mut bot = start(&api.url(), &addr);
    let http = reqwest::Client::new();
    bot.wait_ready(&http, &addr).await;

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
