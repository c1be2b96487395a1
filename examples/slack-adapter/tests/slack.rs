//! The Slack adapter end to end: signed requests into a real bot, replies out to a fake Slack
//! Web API on 127.0.0.1.
#![allow(clippy::disallowed_methods)] // the bot's server runs in one spawned task

use std::time::{SystemTime, UNIX_EPOCH};

use bot_core::api::ApiErrorKind;
use bot_core::testing::fake_api::{FakeApi, FakeRequest, FakeResponse};
use bot_core::{Bot, Context, Error, Event, Secret};
use http::StatusCode;
use serde_json::{Value, json};
use slack_adapter::{SIGNATURE_HEADER, Slack, SlackClient, TIMESTAMP_HEADER, sign};

const SECRET: &str = "slack-signing-secret";
const TOKEN: &str = "xoxb-test-token";

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    cx.reply(event.text_content().unwrap_or_default()).await
}

/// Slack's Web API as far as the adapter uses it: `{"ok": false}` for a wrong token or an
/// unknown channel, as Slack answers them (with HTTP 200).
fn web_api(request: &FakeRequest) -> FakeResponse {
    let answer = if request.bearer() != Some(TOKEN) {
        json!({"ok": false, "error": "invalid_auth"})
    } else if request.json()["channel"] == "C_GONE" {
        json!({"ok": false, "error": "channel_not_found"})
    } else {
        json!({"ok": true, "ts": "1.000001"})
    };
    FakeResponse::json(StatusCode::OK, &answer)
}

fn now() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

async fn post(url: &str, body: &Value, timestamp: &str, secret: &str) -> reqwest::Response {
    let body = body.to_string();
    reqwest::Client::new()
        .post(url)
        .header(TIMESTAMP_HEADER, timestamp)
        .header(
            SIGNATURE_HEADER,
            sign(&Secret::new(secret), timestamp, body.as_bytes()),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn message(event_id: &str, text: &str) -> Value {
    json!({"type": "event_callback", "event_id": event_id, "team_id": "T1",
           "event": {"type": "message", "channel": "C1", "user": "U1", "text": text, "ts": "1.1", "channel_type": "im"}})
}

// ANCHOR: e2e
#[tokio::test]
async fn signed_events_are_answered_once_and_everything_else_is_refused() {
    let fake = FakeApi::start(web_api).await.unwrap();
    let slack = Slack::builder(SECRET, TOKEN)
        .api_base(fake.url())
        .build()
        .unwrap();
    let bot = Bot::builder().adapter(slack).handler(echo).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slack/events", listener.local_addr().unwrap());
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );

    // The URL check Slack makes when the URL is entered in the app's settings.
    let challenge = json!({"type": "url_verification", "challenge": "c-123", "token": "t"});
    let answer = post(&url, &challenge, &now(), SECRET).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "c-123");

    // A message: 200, and the echo posted with the bot token to the message's channel.
    assert_eq!(
        post(&url, &message("Ev1", "hello"), &now(), SECRET)
            .await
            .status(),
        200
    );
    let calls = fake.wait_for_calls(1).await;
    let sent = calls[0].request.json();
    assert_eq!(
        (sent["channel"].as_str(), sent["text"].as_str()),
        (Some("C1"), Some("hello"))
    );

    // Slack's retry of the same event, and the bot's own echo coming back: nothing more sent.
    assert_eq!(
        post(&url, &message("Ev1", "hello"), &now(), SECRET)
            .await
            .status(),
        200
    );
    let own = json!({"type": "event_callback", "event_id": "Ev2",
                     "event": {"type": "message", "channel": "C1", "bot_id": "B1", "text": "hello"}});
    assert_eq!(post(&url, &own, &now(), SECRET).await.status(), 200);
    bot.idle().await;
    assert_eq!(fake.call_count(), 1);

    // A wrong secret, a replayed request and a missing signature: 401, nothing queued.
    assert_eq!(
        post(&url, &message("Ev3", "x"), &now(), "other-secret")
            .await
            .status(),
        401
    );
    let old = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 600)
        .to_string();
    assert_eq!(
        post(&url, &message("Ev4", "x"), &old, SECRET)
            .await
            .status(),
        401
    );
    let unsigned = reqwest::Client::new()
        .post(&url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    // Signed, but not Slack's JSON: 400.
    let garbage = reqwest::Client::new()
        .post(&url)
        .header(TIMESTAMP_HEADER, now())
        .header(
            SIGNATURE_HEADER,
            sign(&Secret::new(SECRET), &now(), b"not json"),
        )
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    bot.idle().await;
    assert_eq!(fake.call_count(), 1);

    bot.request_shutdown();
    server.await.unwrap().unwrap();
}
// ANCHOR_END: e2e

#[tokio::test]
async fn slacks_ok_false_answers_are_errors_with_slacks_code() {
    let fake = FakeApi::start(web_api).await.unwrap();
    let wrong_token = SlackClient::new(fake.url(), "xoxb-wrong").unwrap();
    let error = wrong_token
        .post_message("C1", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ApiErrorKind::Authentication);
    assert_eq!(error.platform_message(), Some("invalid_auth"));

    let client = SlackClient::new(fake.url(), TOKEN).unwrap();
    let error = client
        .post_message("C_GONE", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ApiErrorKind::Api);
    assert_eq!(error.platform_message(), Some("channel_not_found"));
}

#[tokio::test]
async fn half_a_configuration_is_an_error_naming_the_missing_variable() {
    let error = Slack::builder("", TOKEN).build().unwrap_err();
    assert!(
        error.to_string().contains("SLACK_SIGNING_SECRET"),
        "{error}"
    );
    let error = Slack::builder(SECRET, TOKEN)
        .path("events")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("must start with /"), "{error}");
}
