//! The bot end to end, offline: signed LINE and Messenger webhooks in, replies out to fake
//! APIs, the same handlers answering both. (The durable queue is `main`'s: these tests keep
//! events in memory, so that they need no database.)

use bot_core::Secret;
use bot_line::testing::{FakeLine, WebhookBuilder as LineWebhook};
use bot_line::{ConfigureApi as _, Line};
use bot_messenger::Messenger;
use bot_messenger::testing::{FakeMessenger, WebhookBuilder as MessengerWebhook};

#[tokio::test]
async fn one_router_answers_line_and_messenger() -> anyhow::Result<()> {
    let fake_line = FakeLine::start("line-token").await?;
    let fake_graph = FakeMessenger::start("page-token").await?;
    let line = Line::builder("line-secret", "line-token")
        .api_base(fake_line.url())
        .build()?;
    let messenger = Messenger::builder("app-secret", "verify-token", "page-token")
        .api_base(fake_graph.url())
        .build()?;
    let bot = {{crate_name}}::builder()
        .adapter(line)
        .adapter(messenger)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );

    let line_hello = LineWebhook::new()
        .text("U1", "hello")
        .sign(&Secret::new("line-secret"));
    assert_eq!(line_hello.post(&format!("{base}/line/webhook")).await?, 200);
    assert_eq!(fake_line.wait_for_replies(1).await[0].texts(), ["hello"]);

    let help = MessengerWebhook::new()
        .text("psid-1", "/help")
        .sign(&Secret::new("app-secret"));
    assert_eq!(help.post(&format!("{base}/messenger/webhook")).await?, 200);
    let sent = fake_graph.wait_for_messages(1).await;
    assert_eq!(
        sent[0].text(),
        Some("Send me any text on messenger and I will say it back.")
    );

    bot.request_shutdown();
    server.await??;
    Ok(())
}
