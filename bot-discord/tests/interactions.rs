//! The HTTP interactions endpoint over real HTTP: signatures, PING, answers within 3 seconds.
#![allow(clippy::disallowed_methods)] // the server under test runs in one spawned task

use std::time::{Duration, Instant};

use bot_core::{Bot, Context, Error, Event, EventKind, Router};
use bot_discord::Discord;
use bot_discord::interactions::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use bot_discord::testing::{APPLICATION_ID, FakeDiscordApi, InteractionSigner, slash_command};
use serde_json::{Value, json};

const TOKEN: &str = "interactions-token";

struct Endpoint {
    api: FakeDiscordApi,
    url: String,
    bot: Bot,
    server: tokio::task::JoinHandle<Result<bot_core::ShutdownReport, Error>>,
}

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    let EventKind::Command(command) = &event.kind else {
        return Ok(());
    };
    let text = command
        .options
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("nothing");
    cx.reply(text).await
}

async fn slow(cx: Context, _event: Event) -> Result<(), Error> {
    tokio::time::sleep(Duration::from_secs(4)).await;
    cx.reply("worth the wait").await
}

async fn start(signer: &InteractionSigner) -> Endpoint {
    let api = FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1)
        .await
        .unwrap();
    let discord = Discord::builder(TOKEN)
        .api_base(api.url())
        .application_id(APPLICATION_ID)
        .public_key(
            bot_discord::interactions::PublicKey::from_hex(&signer.public_key_hex()).unwrap(),
        )
        .gateway(false)
        .build()
        .unwrap();
    let bot = Bot::builder()
        .adapter(discord)
        .handler(Router::new().command("echo", echo).command("slow", slow))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/discord/interactions",
        listener.local_addr().unwrap()
    );
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    Endpoint {
        api,
        url,
        bot,
        server,
    }
}

impl Endpoint {
    async fn stop(self) {
        self.bot.request_shutdown();
        self.server.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_signed_command_is_answered_in_the_http_response() {
    let signer = InteractionSigner::default();
    let e = start(&signer).await;
    let command = slash_command(
        "echo",
        json!([{"name": "text", "type": 3, "value": "hi there"}]),
        "c1",
        "u1",
    );
    let response = signer.post(&e.url, &command).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"type": 4, "data": {"content": "hi there"}}));
    e.bot.idle().await;
    assert_eq!(e.api.api().call_count(), 0, "no REST call needed");
    e.stop().await;
}

#[tokio::test]
async fn ping_gets_pong() {
    let signer = InteractionSigner::default();
    let e = start(&signer).await;
    let response = signer
        .post(
            &e.url,
            &json!({"id": "1", "type": 1, "application_id": APPLICATION_ID}),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"type": 1}));
    e.stop().await;
}

#[tokio::test]
async fn tampered_stale_unsigned_and_foreign_requests_get_401() {
    let signer = InteractionSigner::default();
    let e = start(&signer).await;
    let client = reqwest::Client::new();
    let body = slash_command("echo", json!([]), "c1", "u1").to_string();
    let now = InteractionSigner::now();
    let post = |signature: Option<String>, timestamp: Option<String>, body: String| {
        let mut request = client.post(&e.url).body(body);
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        if let Some(timestamp) = timestamp {
            request = request.header(TIMESTAMP_HEADER, timestamp);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let good = signer.sign(&now, body.as_bytes());
    let tampered = body.replace("echo", "ohce");
    assert_eq!(
        post(Some(good.clone()), Some(now.clone()), tampered).await,
        401,
        "tampered body"
    );
    let other_time = (now.parse::<u64>().unwrap() + 1).to_string();
    assert_eq!(
        post(Some(good.clone()), Some(other_time), body.clone()).await,
        401,
        "changed timestamp"
    );
    let stale = (now.parse::<u64>().unwrap() - 600).to_string();
    let stale_signature = signer.sign(&stale, body.as_bytes());
    assert_eq!(
        post(Some(stale_signature), Some(stale), body.clone()).await,
        401,
        "stale timestamp"
    );
    assert_eq!(
        post(None, Some(now.clone()), body.clone()).await,
        401,
        "no signature"
    );
    assert_eq!(
        post(Some("zz".into()), Some(now.clone()), body.clone()).await,
        401,
        "not hex"
    );
    let stranger = InteractionSigner::new([9; 32]).sign(&now, body.as_bytes());
    assert_eq!(
        post(Some(stranger), Some(now.clone()), body.clone()).await,
        401,
        "another key"
    );
    assert_eq!(
        post(Some(good), Some(now), body).await,
        200,
        "the genuine one"
    );
    e.stop().await;
}

#[tokio::test]
async fn a_slow_handler_is_deferred_before_three_seconds_then_followed_up() {
    let signer = InteractionSigner::default();
    let e = start(&signer).await;
    let command = slash_command("slow", json!([]), "c1", "u1");
    let token = command["token"].as_str().unwrap().to_owned();
    let sent = Instant::now();
    let response = signer.post(&e.url, &command).await.unwrap();
    let answered_after = sent.elapsed();
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"type": 5}));
    assert!(
        answered_after < Duration::from_secs(3),
        "deferred after {answered_after:?}"
    );
    assert!(
        answered_after >= Duration::from_secs(2),
        "the handler had its chance first"
    );

    let calls = e.api.api().wait_for_calls(1).await;
    assert_eq!(
        calls[0].request.path,
        format!("/webhooks/{APPLICATION_ID}/{token}")
    );
    assert_eq!(calls[0].request.json()["content"], "worth the wait");
    assert!(calls[0].request.received_at - sent >= Duration::from_secs(4));
    e.stop().await;
}
