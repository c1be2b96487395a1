//! Webhook bodies as the platforms send them, unique per request and signed.
//!
//! Bodies are written from a template rather than through `serde_json::Value`, so that the load
//! generator spends its share of the two cores on sending, not on building JSON.

use std::fmt::Write as _;

use bot_core::Secret;

/// The platform whose webhooks are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Platform {
    /// LINE: `{"destination", "events": [...]}`, `x-line-signature`.
    Line,
    /// Messenger: `{"object": "page", "entry": [{"messaging": [...]}]}`, `x-hub-signature-256`.
    Messenger,
}

impl Platform {
    /// The webhook path of the platform's adapter.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Platform::Line => bot_line::webhook::DEFAULT_PATH,
            Platform::Messenger => bot_messenger::webhook::DEFAULT_PATH,
        }
    }

    /// The signature header.
    pub(crate) fn signature_header(self) -> &'static str {
        match self {
            Platform::Line => bot_line::webhook::SIGNATURE_HEADER,
            Platform::Messenger => bot_messenger::webhook::SIGNATURE_HEADER,
        }
    }
}

/// One signed request.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    /// The body.
    pub(crate) body: String,
    /// The signature header's value.
    pub(crate) signature: String,
}

/// Builds request `request` (unique ids from it) with `events` text events over `conversations`
/// conversations, signed with `secret`.
pub(crate) fn signed(
    platform: Platform,
    secret: &Secret,
    request: u64,
    events: usize,
    conversations: u64,
) -> Signed {
    let body = match platform {
        Platform::Line => line(request, events, conversations),
        Platform::Messenger => messenger(request, events, conversations),
    };
    let signature = match platform {
        Platform::Line => bot_line::webhook::sign(secret, body.as_bytes()),
        Platform::Messenger => bot_messenger::webhook::sign(secret, body.as_bytes()),
    };
    Signed { body, signature }
}

const TIMESTAMP: u64 = 1_764_496_800_000;

/// The conversation of event `e` of request `request`: consecutive events go round all
/// `conversations` (numbering them by `n = request * 1000 + e`, as the ids do, would reach only a
/// few of them when `conversations` shares factors with 1,000).
fn spread(request: u64, events: usize, e: u64, conversations: u64) -> u64 {
    (request * events as u64 + e) % conversations.max(1)
}

fn line(request: u64, events: usize, conversations: u64) -> String {
    let mut body = String::with_capacity(120 + events * 420);
    body.push_str(r#"{"destination":"U0123456789abcdef0123456789abcdef","events":["#);
    for e in 0..events as u64 {
        let n = request * 1000 + e;
        let user = spread(request, events, e, conversations);
        if e > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"type":"message","mode":"active","timestamp":{ts},"source":{{"type":"user","userId":"U{user:032x}"}},"webhookEventId":"01LOAD{n:020}","deliveryContext":{{"isRedelivery":false}},"replyToken":"rt{n:030x}","message":{{"type":"text","id":"{n}","quoteToken":"q{n}","text":"hello, bot"}}}}"#,
            ts = TIMESTAMP + n,
        );
    }
    body.push_str("]}");
    body
}

fn messenger(request: u64, events: usize, conversations: u64) -> String {
    let mut body = String::with_capacity(80 + events * 220);
    body.push_str(r#"{"object":"page","entry":[{"id":"100000000000001","time":"#);
    let _ = write!(body, "{}", TIMESTAMP + request);
    body.push_str(r#","messaging":["#);
    for e in 0..events as u64 {
        let n = request * 1000 + e;
        let user = spread(request, events, e, conversations);
        if e > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"100000000000001"}},"timestamp":{ts},"message":{{"mid":"m_load_{n}","text":"hello, bot"}}}}"#,
            psid = 2_000_000_000_000_000_u64 + user,
            ts = TIMESTAMP + n,
        );
    }
    body.push_str("]}]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator's bodies are what the adapters verify and parse: a signing or shape
    /// mistake would make every load figure a figure of 401s or 400s.
    #[test]
    fn bodies_pass_the_adapters_own_verification_and_parsing() {
        let secret = Secret::new("bench-secret");
        let line = signed(Platform::Line, &secret, 7, 10, 100);
        bot_line::webhook::verify(&secret, line.body.as_bytes(), line.signature.as_bytes())
            .unwrap();
        let events = bot_line::event::events_from_body(line.body.as_bytes()).unwrap();
        assert_eq!(events.len(), 10);
        assert!(
            events
                .iter()
                .all(|e| e.text_content() == Some("hello, bot"))
        );
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), 10, "unique event ids");
        assert!(
            bot_line::webhook::verify(
                &Secret::new("other"),
                line.body.as_bytes(),
                line.signature.as_bytes()
            )
            .is_err()
        );

        let messenger = signed(Platform::Messenger, &secret, 7, 10, 100);
        bot_messenger::webhook::verify(
            &secret,
            messenger.body.as_bytes(),
            messenger.signature.as_bytes(),
        )
        .unwrap();
        let batch = bot_messenger::event::parse_body(messenger.body.as_bytes()).unwrap();
        assert_eq!(batch.events.len(), 10);
        assert!(
            batch
                .events
                .iter()
                .all(|e| e.text_content() == Some("hello, bot"))
        );
    }

    #[test]
    fn events_reach_every_conversation() {
        let secret = Secret::new("s");
        let mut seen = std::collections::HashSet::new();
        for request in 0..1_000 {
            let body = signed(Platform::Line, &secret, request, 10, 10_000).body;
            for event in bot_line::event::events_from_body(body.as_bytes()).unwrap() {
                seen.insert(event.conversation.as_str().to_owned());
            }
        }
        assert_eq!(seen.len(), 10_000);
    }

    #[test]
    fn requests_never_repeat_an_event_id() {
        let secret = Secret::new("s");
        let a = bot_line::event::events_from_body(
            signed(Platform::Line, &secret, 1, 10, 5).body.as_bytes(),
        )
        .unwrap();
        let b = bot_line::event::events_from_body(
            signed(Platform::Line, &secret, 2, 10, 5).body.as_bytes(),
        )
        .unwrap();
        assert!(a.iter().all(|x| b.iter().all(|y| x.id != y.id)));
    }
}
