//! The page's JSON API without a browser: what a bad request gets, and that a sent message is
//! journalled with the signed request and answered.
#![allow(clippy::disallowed_methods)] // the page's server runs in one spawned task

use bot_core::Bot;
use emulator::{Author, Emulator, Journal};
use serde_json::{Value, json};

async fn start() -> (
    Emulator,
    String,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let emulator = Emulator::start(
        Bot::builder().handler(emulator::demo::router()),
        Journal::new(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let ui = tokio::spawn(axum::serve(listener, emulator::router(emulator.clone())).into_future());
    (emulator, base, ui)
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_requests_get_a_message_saying_what_is_wrong() {
    let (emulator, base, ui) = start().await;
    let send = format!("{base}/api/send");
    let (status, body) = post(&send, &json!({"platform": "telegram", "text": "hi"})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no platform \"telegram\""),
        "{body}"
    );

    let (status, body) = post(&send, &json!({"platform": "line", "text": "   "})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("type something to send"))
    );

    let (status, body) = post(
        &send,
        &json!({"platform": "line", "text": "x".repeat(5001)}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("at most 5000 bytes"),
        "{body}"
    );

    let (status, body) = post(&send, &json!({"platform": "discord", "text": "/ hello"})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("needs a name"),
        "{body}"
    );

    let tap = format!("{base}/api/tap");
    let (status, body) = post(
        &tap,
        &json!({"platform": "line", "action": "component", "label": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no tap \"component\""),
        "{body}"
    );

    // Not JSON of the right shape: axum's own 4xx, never a panic.
    let (status, _) = post(&send, &json!({"text": "no platform"})).await;
    assert_eq!(status, 422);
    assert!(emulator.journal().items().is_empty(), "nothing was sent");
    emulator.shutdown().await.unwrap();
    ui.abort();
}

#[tokio::test]
async fn a_message_is_journalled_signed_and_answered_and_the_state_says_so() {
    let (emulator, base, ui) = start().await;
    let (status, _) = post(
        &format!("{base}/api/send"),
        &json!({"platform": "messenger", "text": "ping"}),
    )
    .await;
    assert_eq!(status, 204);
    let (line, graph, _) = emulator.fakes();
    assert!(line.replies().is_empty());
    graph.wait_for_messages(1).await;
    // Handled: the attempt's outcome is counted.
    emulator.bot().idle().await;

    let state: Value = reqwest::get(format!("{base}/api/state?after=0"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = state["items"].as_array().unwrap();
    let user = items.iter().find(|i| i["from"] == "user").unwrap();
    assert_eq!(
        user["event"]["headers"]["x-hub-signature-256"]
            .as_str()
            .map(|s| s.starts_with("sha256=")),
        Some(true)
    );
    assert_eq!(
        user["event"]["body"]["entry"][0]["messaging"][0]["message"]["text"],
        "ping"
    );
    let bot = items.iter().find(|i| i["from"] == "bot").unwrap();
    assert_eq!(bot["body"]["text"], "ping");
    assert!(bot["via"].as_str().unwrap().starts_with("Send API"));
    assert!(state["figures"]["processed"]["ok"].as_f64().unwrap() >= 1.0);

    // Asking again with the version seen and nothing new: the same version after the wait.
    let version = state["version"].as_u64().unwrap();
    let last = items.last().unwrap()["seq"].as_u64().unwrap();
    let again: Value = reqwest::get(format!("{base}/api/state?after={last}&version={version}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(again["items"].as_array().unwrap().is_empty());
    assert_eq!(
        emulator
            .journal()
            .items()
            .iter()
            .filter(|i| i.from == Author::User)
            .count(),
        1
    );
    emulator.shutdown().await.unwrap();
    ui.abort();
}
