//! The bot end to end, offline: signed webhooks in, replies out to a fake LINE API.

use bot_core::Secret;
use bot_line::testing::{FakeLine, WebhookBuilder};
use bot_line::{ConfigureApi as _, Line};

const SECRET: &str = "test-channel-secret";
const TOKEN: &str = "test-access-token";

#[tokio::test]
async fn text_is_said_back_and_help_is_answered() -> anyhow::Result<()> {
    let fake = FakeLine::start(TOKEN).await?;
    let line = Line::builder(SECRET, TOKEN).api_base(fake.url()).build()?;
    let bot = {{crate_name}}::bot(line)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/line/webhook", listener.local_addr()?);
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );

    let secret = Secret::new(SECRET);
    let hello = WebhookBuilder::new().text("U1", "hello").sign(&secret);
    assert_eq!(hello.post(&url).await?, 200);
    assert_eq!(fake.wait_for_replies(1).await[0].texts(), ["hello"]);
    let help = WebhookBuilder::new().text("U1", "/help").sign(&secret);
    assert_eq!(help.post(&url).await?, 200);
    let replies = fake.wait_for_replies(2).await;
    assert_eq!(
        replies[1].texts(),
        ["Send me any text and I will say it back."]
    );

    let forged = WebhookBuilder::new()
        .text("U1", "hi")
        .sign(&Secret::new("another secret"));
    assert_eq!(
        forged.post(&url).await?,
        401,
        "a webhook LINE did not sign is refused"
    );

    bot.request_shutdown();
    server.await??;
    Ok(())
}
