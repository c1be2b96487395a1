//! A flood of forged webhooks on every platform costs a counter increment each, not a log line
//! each: 1,000 bad signatures (LINE, Messenger, Discord interactions) and wrong Messenger verify
//! tokens make at most a couple of lines at INFO and above, and `/metrics` counts every one.
#![allow(clippy::disallowed_methods)] // the server under test runs in one spawned task

use std::sync::{Arc, Mutex};

use bot_core::{Bot, Context, Error, Event};
use bot_discord::Discord;
use bot_discord::testing::{APPLICATION_ID, InteractionSigner};
use bot_line::Line;
use bot_messenger::Messenger;

/// Every line logged at INFO and above.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn ignore(_: Context, _: Event) -> Result<(), Error> {
    Ok(())
}

/// The value of the sample of `bot_webhook_rejected_total` with these labels.
fn rejected(metrics: &str, platform: &str, reason: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("bot_webhook_rejected"))
        .filter(|l| {
            l.contains(&format!("platform=\"{platform}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .unwrap_or_else(|| panic!("no {platform}/{reason} sample in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_forged_webhooks_log_a_couple_of_lines_and_count_exactly() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let signer = InteractionSigner::new([9; 32]);
    let bot = Bot::builder()
        .adapter(Line::builder("line-secret", "line-token").build().unwrap())
        .adapter(
            Messenger::builder("app-secret", "verify-token", "page-token")
                .build()
                .unwrap(),
        )
        .adapter(
            Discord::builder("discord-token")
                .application_id(APPLICATION_ID)
                .public_key(
                    bot_discord::interactions::PublicKey::from_hex(&signer.public_key_hex())
                        .unwrap(),
                )
                .gateway(false)
                .build()
                .unwrap(),
        )
        .handler(ignore)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    // One client, so that the flood reuses a few connections.
    let client = reqwest::Client::new();
    let body = r#"{"destination":"U0","events":[]}"#;
    for i in 0..1000 {
        let response = match i % 4 {
            0 => client
                .post(format!("{base}/line/webhook"))
                .header(bot_line::webhook::SIGNATURE_HEADER, "Zm9yZ2Vk")
                .body(body),
            1 => client
                .post(format!("{base}/messenger/webhook"))
                .header(bot_messenger::webhook::SIGNATURE_HEADER, "sha256=00ff")
                .body(r#"{"object":"page","entry":[]}"#),
            2 => client
                .post(format!("{base}/discord/interactions"))
                .header(bot_discord::interactions::SIGNATURE_HEADER, "00".repeat(64))
                .header(
                    bot_discord::interactions::TIMESTAMP_HEADER,
                    InteractionSigner::now(),
                )
                .body(r#"{"type":1}"#),
            _ => client.get(format!(
                "{base}/messenger/webhook?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=c"
            )),
        }
        .send()
        .await
        .unwrap();
        assert!(
            response.status().is_client_error(),
            "request {i}: {}",
            response.status()
        );
    }
    let metrics = bot.telemetry().render_prometheus();
    assert_eq!(rejected(&metrics, "line", "signature"), 250.0);
    assert_eq!(rejected(&metrics, "messenger", "signature"), 250.0);
    assert_eq!(rejected(&metrics, "discord", "signature"), 250.0);
    assert_eq!(rejected(&metrics, "messenger", "verify_token"), 250.0);

    bot.request_shutdown();
    server.await.unwrap().unwrap();
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let refusal_lines: Vec<&str> = logs.lines().filter(|l| l.contains("refused")).collect();
    assert!(
        !refusal_lines.is_empty() && refusal_lines.len() <= 2,
        "1,000 refusals within 10 s make one or two lines, not {}:\n{logs}",
        refusal_lines.len()
    );
    assert!(
        refusal_lines[0].contains("WARN"),
        "the first refusal is logged at WARN: {}",
        refusal_lines[0]
    );
}
