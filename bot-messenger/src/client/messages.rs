//! The Send API: messages and sender actions.

use std::time::Instant;

use bot_core::api::Call;
use serde_json::{Value, json};

use super::builder::{MEDIA, MessengerClient, SEND};
use crate::error::Error;
use crate::model::send::{Message, MessagingType, Recipient, SendResponse, SenderAction};

/// The Send API path under the base.
pub const SEND_PATH: &str = "/me/messages";

impl MessengerClient {
    /// Sends one message through the Send API.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidRequest`] for a text over 2,000 characters or over 13 quick
    /// replies (nothing sent); the typed refusals of [`crate::ErrorKind`]
    /// (`Authentication`, `UserNotFound`, `OutsideWindow`, `UserUnavailable`, `Api`, with
    /// [`crate::model::send::GraphError`] as [`Error::details`]);
    /// [`crate::ErrorKind::RateLimited`] or [`crate::ErrorKind::Server`] once the retries are
    /// used up; [`crate::ErrorKind::Timeout`], [`crate::ErrorKind::Transport`] or
    /// [`crate::ErrorKind::Server`] with [`Error::maybe_delivered`] when the request may have
    /// reached Meta (not retried). When Meta answers 2xx but the answer cannot be read, the
    /// message was sent: `Ok` with no `message_id`.
    pub async fn send_message(
        &self,
        recipient: &Recipient,
        message: &Message,
        messaging_type: &MessagingType,
    ) -> Result<SendResponse, Error> {
        let deadline = self.api.deadline_from_now();
        self.send_message_until(recipient, message, messaging_type, deadline)
            .await
    }

    /// As [`MessengerClient::send_message`], given up at `deadline` (shared by the parts of a
    /// reply).
    pub(super) async fn send_message_until(
        &self,
        recipient: &Recipient,
        message: &Message,
        messaging_type: &MessagingType,
        deadline: Instant,
    ) -> Result<SendResponse, Error> {
        crate::render::check_message(message)?;
        let mut body = json!({
            "recipient": recipient.to_json(),
            "messaging_type": messaging_type.as_str(),
            "message": message,
        });
        if let Some(tag) = messaging_type.tag() {
            body["tag"] = Value::String(tag.as_str().to_owned());
        }
        // Audio, video and files count against their own, lower, quota.
        let endpoint = match message.attachment_type() {
            Some("audio" | "video" | "file") => MEDIA,
            _ => SEND,
        };
        let call = Call::post(endpoint, SEND_PATH)
            .json(&body)?
            .deadline(deadline);
        // Written out: only its bytes are held for the seconds the call may take.
        drop(body);
        let answer = self.api.call(call).await?;
        // A 2xx means the message was sent: an answer that cannot be read loses only its id.
        Ok(answer.json().unwrap_or_else(|e| {
            if !answer.body.is_empty() {
                tracing::warn!(
                    error = %e,
                    "messenger send answer is not a send response; the message was sent"
                );
            }
            SendResponse::default()
        }))
    }

    /// Sends a typing indicator or read receipt (alone, as the Send API requires). Idempotent,
    /// so retried after time-outs too.
    ///
    /// # Errors
    ///
    /// As [`MessengerClient::send_message`].
    pub async fn sender_action(
        &self,
        recipient: &Recipient,
        action: SenderAction,
    ) -> Result<(), Error> {
        let deadline = self.api.deadline_from_now();
        self.sender_action_until(recipient, action, deadline).await
    }

    /// As [`MessengerClient::sender_action`], given up at `deadline` (the deadline of the send
    /// the typing indicator opens).
    pub(super) async fn sender_action_until(
        &self,
        recipient: &Recipient,
        action: SenderAction,
        deadline: Instant,
    ) -> Result<(), Error> {
        let body = json!({"recipient": recipient.to_json(), "sender_action": action.as_str()});
        let call = Call::post(SEND, SEND_PATH)
            .json(&body)?
            .idempotent(true)
            .deadline(deadline);
        self.api.call(call).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::model::send::{MAX_QUICK_REPLIES, MAX_TEXT_CHARS, QuickReply};

    #[test]
    fn messages_over_the_limits_are_refused_before_sending() {
        let long = Message::text("x".repeat(MAX_TEXT_CHARS + 1));
        assert_eq!(
            crate::render::check_message(&long).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        let chips = (0..=MAX_QUICK_REPLIES)
            .map(|i| QuickReply::text(format!("{i}"), "p"))
            .collect();
        let many = Message::text("pick").with_quick_replies(chips);
        assert_eq!(
            crate::render::check_message(&many).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        assert!(crate::render::check_message(&Message::text("x".repeat(MAX_TEXT_CHARS))).is_ok());
    }
}
