//! The HTTP interactions endpoint over real HTTP: signatures, PING, answers within 3 seconds.
#![allow(clippy::disallowed_methods)] // the server under test runs in one spawned task

use std::time::{Duration, Instant};

use std::sync::Arc;

use bot_core::{Bot, Context, Error, Event, EventKind, Limits, Overflow, Router};
use bot_discord::ConfigureApi as _;
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
    start_with(
        signer,
        Limits::default(),
        Router::new().command("echo", echo).command("slow", slow),
    )
    .await
}

async fn start_with(signer: &InteractionSigner, limits: Limits, router: Router) -> Endpoint {
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
        .handler(router)
        .limits(limits)
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

#[tokio::test]
async fn autocomplete_gets_an_empty_choice_list_at_once() {
    let signer = InteractionSigner::default();
    let e = start(&signer).await;
    let mut interaction = slash_command(
        "echo",
        json!([{"name": "text", "type": 3, "value": "h", "focused": true}]),
        "c1",
        "u1",
    );
    interaction["type"] = json!(4);
    let response = signer.post(&e.url, &interaction).await.unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"type": 8, "data": {"choices": []}})
    );
    e.stop().await;
}

#[tokio::test]
async fn a_queue_too_slow_to_take_an_interaction_answers_503_within_the_deadline() {
    let signer = InteractionSigner::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let blocked = move |cx: Context, _event: Event| {
        let held = held.clone();
        async move {
            let _permit = held.acquire().await.expect("open");
            cx.reply("late").await
        }
    };
    // One handler at a time, one waiting event, and a producer that waits for room.
    let limits = Limits {
        max_in_flight: 1,
        queue_capacity: 1,
        overflow: Overflow::Wait,
        ..Limits::default()
    };
    let e = start_with(&signer, limits, Router::new().command("block", blocked)).await;
    let busy = |n: u32| {
        let signer = signer.clone();
        let url = e.url.clone();
        tokio::spawn(async move {
            let command = slash_command(
                "block",
                json!([{"name": "n", "type": 4, "value": n}]),
                "c1",
                "u1",
            );
            signer.post(&url, &command).await.unwrap().status().as_u16()
        })
    };
    let running = busy(1);
    let waiting = busy(2);
    // Both are taken (one runs, one waits in the queue) before the third arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while e.bot.queue().depth() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never filled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = Instant::now();
    let response = signer
        .post(&e.url, &slash_command("block", json!([]), "c1", "u1"))
        .await
        .unwrap();
    let answered_after = sent.elapsed();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(
        answered_after < Duration::from_secs(3),
        "answered after {answered_after:?}"
    );
    gate.add_permits(10);
    assert_eq!((running.await.unwrap(), waiting.await.unwrap()), (200, 200));
    e.stop().await;
}
