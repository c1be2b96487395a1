//! The watchers: every request a platform's fake receives from the bot becomes items of the
//! conversation, drawn from the platform's own JSON; console output becomes text items.

use bot_core::testing::fake_api::{Call, FakeApi};
use bot_discord::testing::FakeDiscordApi;
use bot_line::testing::{FakeLine, LOADING_PATH, MULTICAST_PATH, PUSH_PATH, REPLY_PATH};
use bot_messenger::testing::FakeMessenger;
use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader, DuplexStream};
use tokio::task::JoinHandle;

use crate::journal::{Author, Item, Journal};

/// A note item.
pub(crate) fn note(platform: &'static str, text: String) -> Item {
    Item {
        seq: 0,
        platform,
        from: Author::Note,
        kind: "note",
        body: Value::String(text),
        via: String::new(),
        event: None,
    }
}

fn bot_item(platform: &'static str, kind: &'static str, body: Value, via: String) -> Item {
    Item {
        seq: 0,
        platform,
        from: Author::Bot,
        kind,
        body,
        via,
        event: None,
    }
}

/// Follows `api`'s calls for as long as the emulator runs, turning each into items.
fn follow(
    api: FakeApi,
    journal: Journal,
    to_items: impl Fn(&Call) -> Vec<Item> + Send + 'static,
) -> JoinHandle<()> {
    // One long-lived task per fake, aborted by `Emulator::shutdown`.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            api.wait_for_count(seen + 1).await;
            let calls = api.calls();
            for call in calls.iter().skip(seen) {
                for item in to_items(call) {
                    journal.push(item);
                }
            }
            seen = seen.max(calls.len());
        }
    })
}

/// What the fake LINE API received: reply, push and multicast messages, the loading animation.
pub(crate) fn line(fake: FakeLine, journal: Journal) -> JoinHandle<()> {
    follow(fake.api().clone(), journal, line_items)
}

fn line_items(call: &Call) -> Vec<Item> {
    let request = &call.request;
    let body = request.json();
    let api = match request.path.as_str() {
        REPLY_PATH => "reply API",
        PUSH_PATH => "push API",
        MULTICAST_PATH => "multicast API",
        LOADING_PATH => {
            return vec![bot_item(
                "line",
                "typing",
                body,
                format!("loading animation · HTTP {}", call.status.as_u16()),
            )];
        }
        path => {
            return vec![note(
                "line",
                format!("{} {path} → HTTP {}", request.method, call.status.as_u16()),
            )];
        }
    };
    let via = format!("{api} · HTTP {}", call.status.as_u16());
    match body["messages"].as_array() {
        Some(messages) => messages
            .iter()
            .map(|m| bot_item("line", "message", m.clone(), via.clone()))
            .collect(),
        None => vec![note("line", format!("{via} without messages"))],
    }
}

/// What the fake Graph API received: Send API messages and sender actions.
pub(crate) fn messenger(fake: FakeMessenger, journal: Journal) -> JoinHandle<()> {
    follow(fake.api().clone(), journal, messenger_items)
}

fn messenger_items(call: &Call) -> Vec<Item> {
    let request = &call.request;
    let status = call.status.as_u16();
    if request.method == Method::POST && request.path.ends_with("/messages") {
        let body = request.json();
        if let Some(message) = body.get("message") {
            let via = format!(
                "Send API ({}) · HTTP {status}",
                body["messaging_type"].as_str().unwrap_or("RESPONSE")
            );
            return vec![bot_item("messenger", "message", message.clone(), via)];
        }
        if let Some(action) = body.get("sender_action").and_then(Value::as_str) {
            let kind = if action == "typing_on" {
                "typing"
            } else {
                "note"
            };
            let body = match kind {
                "typing" => json!({"sender_action": action}),
                _ => Value::String(format!("sender action {action}")),
            };
            return vec![bot_item(
                "messenger",
                kind,
                body,
                format!("Send API · HTTP {status}"),
            )];
        }
    }
    vec![note(
        "messenger",
        format!("{} {} → HTTP {status}", request.method, request.path),
    )]
}

/// What the fake Discord REST API received: channel messages, interaction callbacks,
/// follow-ups and edits of a deferred answer.
pub(crate) fn discord(fake: FakeDiscordApi, journal: Journal) -> JoinHandle<()> {
    follow(fake.api().clone(), journal, discord_items)
}

fn discord_items(call: &Call) -> Vec<Item> {
    let request = &call.request;
    let status = call.status.as_u16();
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let body = request.json();
    let via = |what: &str| format!("{what} · HTTP {status}");
    match (&request.method, segments.as_slice()) {
        (&Method::POST, ["channels", _, "messages"]) => {
            vec![bot_item("discord", "message", body, via("create message"))]
        }
        (&Method::POST, ["channels", _, "typing"]) => {
            vec![bot_item("discord", "typing", json!({}), via("typing"))]
        }
        (&Method::POST, ["interactions", _, _, "callback"]) => {
            vec![bot_item(
                "discord",
                "interaction",
                body,
                via("interaction callback"),
            )]
        }
        (&Method::POST, ["webhooks", _, _]) => {
            vec![bot_item(
                "discord",
                "message",
                body,
                via("follow-up message"),
            )]
        }
        (&Method::PATCH, ["webhooks", _, _, "messages", "@original"]) => {
            vec![bot_item(
                "discord",
                "message",
                body,
                via("edit of the deferred answer"),
            )]
        }
        (&Method::GET, ["gateway", "bot"]) => Vec::new(),
        (method, _) => vec![note(
            "discord",
            format!("{method} {} → HTTP {status}", request.path),
        )],
    }
}

/// Console output, one text item per line.
pub(crate) fn console(output: DuplexStream, journal: Journal) -> JoinHandle<()> {
    // One long-lived task reading the console's output, aborted by `Emulator::shutdown`.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            journal.push(bot_item(
                "console",
                "text",
                json!({"text": line}),
                "stdout".to_owned(),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bot_core::testing::fake_api::FakeRequest;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;

    fn call(method: Method, path: &str, body: Value) -> Call {
        Call {
            request: FakeRequest {
                method,
                path: path.to_owned(),
                query: None,
                headers: HeaderMap::new(),
                body: Bytes::from(body.to_string()),
                received_at: Instant::now(),
            },
            status: StatusCode::OK,
        }
    }

    #[test]
    fn a_line_reply_is_one_item_per_message() {
        let items = line_items(&call(
            Method::POST,
            REPLY_PATH,
            json!({"replyToken": "t", "messages": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
        ));
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].body["text"], "b");
        assert_eq!(items[0].via, "reply API · HTTP 200");
    }

    #[test]
    fn a_messenger_message_and_a_typing_action() {
        let items = messenger_items(&call(
            Method::POST,
            "/v23.0/me/messages",
            json!({"recipient": {"id": "1"}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}),
        ));
        assert_eq!(
            (items[0].kind, items[0].body["text"].as_str()),
            ("message", Some("hi"))
        );
        let items = messenger_items(&call(
            Method::POST,
            "/v23.0/me/messages",
            json!({"recipient": {"id": "1"}, "sender_action": "typing_on"}),
        ));
        assert_eq!(items[0].kind, "typing");
    }

    #[test]
    fn discord_routes_are_told_apart() {
        let kinds: Vec<&str> = [
            call(
                Method::POST,
                "/channels/9/messages",
                json!({"content": "x"}),
            ),
            call(
                Method::POST,
                "/interactions/1/tok/callback",
                json!({"type": 4, "data": {"content": "x"}}),
            ),
            call(Method::POST, "/webhooks/2/tok", json!({"content": "x"})),
            call(
                Method::PATCH,
                "/webhooks/2/tok/messages/@original",
                json!({"content": "x"}),
            ),
        ]
        .iter()
        .flat_map(discord_items)
        .map(|i| i.kind)
        .collect();
        assert_eq!(kinds, ["message", "interaction", "message", "message"]);
        assert!(discord_items(&call(Method::GET, "/gateway/bot", Value::Null)).is_empty());
    }
}
