//! [`SlackClient`]: `chat.postMessage` on the runtime's HTTP client core, and the [`Outbound`]
//! that renders neutral messages for Slack.

use async_trait::async_trait;
use bot_core::api::{Answer, ApiClient, ApiConfig, ApiError, ApiErrorKind, ApiSpec, Call};
use bot_core::outbound::{Action, Outbound, OutgoingMessage, Rendering, Rich, Target};
use bot_core::{Error, Platform, Telemetry};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::event::PLATFORM;

/// Slack's Web API.
pub const DEFAULT_API_BASE: &str = "https://slack.com/api";

// ANCHOR: spec
/// Slack's part of the client core: who it is and how its refusals read. The core does the
/// rest: the bearer token, time-outs, retries with back-off, `Retry-After`, telemetry.
#[derive(Debug)]
struct SlackSpec;

impl ApiSpec for SlackSpec {
    type Permit = ();

    fn platform(&self) -> Platform {
        PLATFORM
    }

    fn user_agent(&self) -> &'static str {
        concat!("botrt-slack-example/", env!("CARGO_PKG_VERSION"))
    }

    async fn admit(&self, _call: &Call, _deadline: std::time::Instant) -> Result<(), ApiError> {
        // Slack's tiers are per method: the core's per-endpoint quotas (ApiConfig::limit) do it.
        Ok(())
    }

    fn refusal(&self, _call: &Call, answer: &Answer) -> ApiError {
        let (kind, message) = match answer.status {
            StatusCode::TOO_MANY_REQUESTS => (ApiErrorKind::RateLimited, "slack: rate limited"),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                ApiErrorKind::Authentication,
                "slack: the bot token was refused",
            ),
            s if s.is_server_error() => (ApiErrorKind::Server, "slack: server error"),
            _ => (ApiErrorKind::Api, "slack: the call was refused"),
        };
        ApiError::new(kind, message)
            .with_retry_after(answer.retry_after())
            .with_maybe_delivered(
                answer.status.is_server_error() && answer.status != StatusCode::SERVICE_UNAVAILABLE,
            )
    }
}
// ANCHOR_END: spec

/// What every Web API method answers, with HTTP 200 even when it refused the call.
#[derive(Debug, Deserialize)]
struct WebApiAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

/// Slack's Web API for the bot: `chat.postMessage`. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct SlackClient {
    api: ApiClient<SlackSpec>,
}

impl SlackClient {
    /// A client of `base` with the bot token `token`; `chat.postMessage` is limited to one call
    /// a second per process, Slack's rate for one channel.
    ///
    /// # Errors
    ///
    /// [`ApiErrorKind::Config`] for an empty token or a base that is not http(s).
    pub fn new(
        base: impl Into<String>,
        token: impl Into<bot_core::Secret>,
    ) -> Result<Self, ApiError> {
        let mut config = ApiConfig::new(base, token);
        config.limit("chat.postMessage", 1);
        Ok(Self {
            api: ApiClient::new(SlackSpec, config)?,
        })
    }

    pub(crate) fn with_telemetry(&self, telemetry: Telemetry) -> Self {
        Self {
            api: self.api.with_telemetry(telemetry),
        }
    }

    // ANCHOR: post
    /// Posts `message` (Slack's JSON: `text`, `blocks`) in `channel`.
    ///
    /// # Errors
    ///
    /// What the core says (time-out, rate limit, refusal), or [`ApiErrorKind::Api`] with Slack's
    /// `error` code when it answered `{"ok": false}`.
    pub async fn post_message(&self, channel: &str, mut message: Value) -> Result<(), ApiError> {
        message["channel"] = json!(channel);
        let call = Call::post("chat.postMessage", "/chat.postMessage").json(&message)?;
        let answer: WebApiAnswer = self.api.call(call).await?.json()?;
        if answer.ok {
            return Ok(());
        }
        let code = answer.error.unwrap_or_else(|| "unknown".to_owned());
        let kind = match code.as_str() {
            "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" => {
                ApiErrorKind::Authentication
            }
            _ => ApiErrorKind::Api,
        };
        Err(ApiError::new(kind, "slack: chat.postMessage refused")
            .with_platform_message(Some(code)))
    }
    // ANCHOR_END: post
}

// ANCHOR: render
/// One neutral message as Slack's `text` and `blocks`: buttons and quick replies as an actions
/// block (links open; other buttons show, as this adapter serves no interactivity URL), an
/// image as an image block. Cards, carousels and files go as text with their links; a typing
/// indicator as nothing (Slack has none for bots); another platform's message as its fallback.
pub(crate) fn render(message: &OutgoingMessage) -> Result<Option<Value>, ApiError> {
    let mut text = message.text.clone().unwrap_or_default();
    let mut blocks = Vec::new();
    if let Some(image) = &message.image {
        blocks.push(json!({"type": "image", "image_url": image.url, "alt_text": "image"}));
    }
    match &message.rich {
        None => {}
        Some(Rich::Typing) => {}
        Some(Rich::Card(card)) => push_line(&mut text, &card.title),
        Some(Rich::Carousel { cards }) => cards.iter().for_each(|c| push_line(&mut text, &c.title)),
        Some(Rich::File(file)) => push_line(&mut text, &format!("<{}|{}>", file.url, file.name)),
        Some(Rich::Platform(platform)) => match platform.render_on(&PLATFORM) {
            Some(Rendering::Native(body)) => return Ok(Some(body.clone())),
            Some(Rendering::Fallback(fallback)) => return render(fallback),
            _ => {
                return Err(ApiError::invalid_request(format!(
                    "slack: a {} message without a fallback cannot go to slack",
                    platform.platform()
                )));
            }
        },
        Some(_) => {
            return Err(ApiError::invalid_request(
                "slack: a message kind this adapter does not know",
            ));
        }
    }
    let buttons: Vec<Value> = message
        .buttons
        .iter()
        .map(|b| (&b.label, &b.action))
        .chain(message.quick_replies.iter().map(|q| (&q.label, &q.action)))
        .map(|(label, action)| {
            let mut button =
                json!({"type": "button", "text": {"type": "plain_text", "text": label}});
            match action {
                Action::Url(url) => button["url"] = json!(url),
                Action::Postback(data) | Action::Message(data) => button["value"] = json!(data),
                _ => {}
            }
            button
        })
        .collect();
    if !buttons.is_empty() {
        blocks.insert(
            0,
            json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}),
        );
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    if text.is_empty() && blocks.is_empty() {
        return Ok(None);
    }
    let mut body = json!({"text": text});
    if !blocks.is_empty() {
        body["blocks"] = Value::Array(blocks);
    }
    Ok(Some(body))
}
// ANCHOR_END: render

fn push_line(text: &mut String, line: &str) {
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(line);
}

// ANCHOR: outbound
#[async_trait]
impl Outbound for SlackClient {
    fn platform(&self) -> Platform {
        PLATFORM
    }

    async fn send(&self, target: &Target, messages: Vec<OutgoingMessage>) -> Result<(), Error> {
        for message in &messages {
            if let Some(body) = render(message)? {
                self.post_message(target.conversation.as_str(), body)
                    .await?;
            }
        }
        Ok(())
    }
}
// ANCHOR_END: outbound

#[cfg(test)]
mod tests {
    use bot_core::outbound::{Button, QuickReply};

    use super::*;

    #[test]
    fn text_with_choices_is_a_section_and_an_actions_block() {
        let message = OutgoingMessage::text("Pick one")
            .quick_reply(QuickReply::postback("Pasta", "order:pasta"))
            .quick_reply(QuickReply::message("Pizza"));
        let body = render(&message).unwrap().unwrap();
        assert_eq!(body["text"], "Pick one");
        assert_eq!(body["blocks"][0]["type"], "section");
        assert_eq!(body["blocks"][1]["elements"][0]["value"], "order:pasta");
        assert_eq!(body["blocks"][1]["elements"][1]["text"]["text"], "Pizza");
    }

    #[test]
    fn links_open_and_typing_sends_nothing() {
        let message =
            OutgoingMessage::text("Menu").button(Button::link("Open", "https://example.com"));
        let body = render(&message).unwrap().unwrap();
        assert_eq!(
            body["blocks"][1]["elements"][0]["url"],
            "https://example.com"
        );
        assert_eq!(render(&OutgoingMessage::typing()).unwrap(), None);
    }
}
