//! Sending messages: reply, push and multicast, and the [`RetryKey`] that makes a push happen once.

use std::time::Instant;

use bot_core::EventId;
use bot_core::api::{Answer, Call};
use http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::builder::{LineClient, endpoint};
use super::spec::{ACCEPTED_REQUEST_ID_HEADER, REQUEST_ID_HEADER};
use crate::error::Error;
use crate::model::send::{MAX_MULTICAST_RECIPIENTS, Message, SendOutcome, SentMessages};

/// The Reply API call of `messages` with `reply_token`, its body written: the messages are not
/// needed while it is made.
pub(super) fn reply_call(reply_token: &str, messages: &[Message]) -> Result<Call, Error> {
    crate::render::check_count(messages)?;
    Ok(Call::post(endpoint::REPLY, "/v2/bot/message/reply")
        .json(&json!({"replyToken": reply_token, "messages": messages}))?
        .idempotent(true)
        .answer_optional(true))
}

/// The body of a push or multicast, serialised straight from the messages (no JSON tree is built
/// per call): `{"messages": […], "to": …}`.
#[derive(serde::Serialize)]
struct SendBody<'a, To: serde::Serialize + ?Sized> {
    messages: &'a [Message],
    to: &'a To,
}

/// Namespace of the retry keys derived from event ids (UUID v5).
const RETRY_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6c69_6e65_2d72_6574_7279_2d6b_6579_0001);

/// An `X-Line-Retry-Key`: the same key on every attempt of one push makes LINE send it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryKey(Uuid);

impl RetryKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The key for part `part` of the `send_index`-th send a handler made for `event`
    /// ([`bot_core::outbound::Target::send_index`]): the same whenever the event is handled
    /// again, so a retried handler does not push twice, while two sends of one handler are two
    /// messages (LINE keeps keys for 24 hours).
    pub fn for_send(event: &EventId, send_index: u32, part: usize) -> Self {
        Self(Uuid::new_v5(
            &RETRY_KEY_NAMESPACE,
            format!("{event}/{send_index}/{part}").as_bytes(),
        ))
    }

    /// The key as LINE expects it (a hyphenated UUID).
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl LineClient {
    /// Replies with 1 to 5 messages using a reply token.
    ///
    /// A reply token is single-use, so LINE itself makes a retried reply harmless: the call is
    /// retried after a time-out or a server error like a read.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidRequest`] for 0 or more than 5 messages (nothing sent);
    /// [`crate::ErrorKind::InvalidReplyToken`] when LINE refuses the token; otherwise as any
    /// call.
    pub async fn reply(
        &self,
        reply_token: &str,
        messages: &[Message],
    ) -> Result<SendOutcome, Error> {
        let call = reply_call(reply_token, messages)?;
        self.reply_with(call, None).await
    }

    /// Makes the reply `call` ([`reply_call`]) under `deadline`.
    // Not an `async fn`, which would hold the call a second time while it waits.
    pub(super) fn reply_with(
        &self,
        call: Call,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<SendOutcome, Error>> + Send + '_ {
        futures::FutureExt::map(self.call(call, deadline), |answer| Ok(outcome(&answer?)))
    }

    /// Pushes 1 to 5 messages to a user, group or room. The call is retried with one
    /// `X-Line-Retry-Key` (`retry_key`, or a fresh one), so it is delivered at most once.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidRequest`] for 0 or more than 5 messages (nothing sent);
    /// otherwise as any call.
    pub async fn push(
        &self,
        to: &str,
        messages: &[Message],
        retry_key: Option<RetryKey>,
    ) -> Result<SendOutcome, Error> {
        self.push_until(to, messages, retry_key, None).await
    }

    pub(super) async fn push_until(
        &self,
        to: &str,
        messages: &[Message],
        retry_key: Option<RetryKey>,
        deadline: Option<Instant>,
    ) -> Result<SendOutcome, Error> {
        crate::render::check_count(messages)?;
        let call = keyed(
            Call::post(endpoint::PUSH, "/v2/bot/message/push"),
            retry_key,
        )
        .json(&SendBody { messages, to })?;
        Ok(outcome(&self.call(call, deadline).await?))
    }

    /// Sends 1 to 5 messages to up to 500 users, with an `X-Line-Retry-Key` as
    /// [`LineClient::push`].
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidRequest`] for no recipients, more than 500, or a wrong number
    /// of messages; otherwise as any call.
    pub async fn multicast(
        &self,
        to: &[&str],
        messages: &[Message],
        retry_key: Option<RetryKey>,
    ) -> Result<SendOutcome, Error> {
        crate::render::check_count(messages)?;
        if to.is_empty() || to.len() > MAX_MULTICAST_RECIPIENTS {
            return Err(Error::invalid_request(format!(
                "line: multicast takes 1 to {MAX_MULTICAST_RECIPIENTS} recipients, got {}",
                to.len()
            )));
        }
        let call = keyed(
            Call::post(endpoint::MULTICAST, "/v2/bot/message/multicast"),
            retry_key,
        )
        .json(&SendBody { messages, to })?;
        Ok(outcome(&self.call(call, None).await?))
    }
}

/// `call` with `key`, or a fresh one: the same on every attempt.
fn keyed(call: Call, key: Option<RetryKey>) -> Call {
    let key = key.unwrap_or_else(RetryKey::random);
    call.idempotency_key(key.as_uuid().hyphenated().to_string())
}

fn outcome(answer: &Answer) -> SendOutcome {
    let sent: SentMessages = if answer.status == StatusCode::CONFLICT {
        SentMessages::default()
    } else {
        serde_json::from_slice(&answer.body).unwrap_or_default()
    };
    SendOutcome {
        sent_messages: sent.sent_messages,
        request_id: answer.header(REQUEST_ID_HEADER).map(str::to_owned),
        accepted_request_id: answer.header(ACCEPTED_REQUEST_ID_HEADER).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_keys_derive_from_events_and_parts() {
        let e = EventId::new("01HX");
        assert_eq!(RetryKey::for_send(&e, 0, 0), RetryKey::for_send(&e, 0, 0));
        assert_ne!(RetryKey::for_send(&e, 0, 0), RetryKey::for_send(&e, 0, 1));
        assert_ne!(RetryKey::for_send(&e, 0, 0), RetryKey::for_send(&e, 1, 0));
        assert_ne!(
            RetryKey::for_send(&e, 0, 0),
            RetryKey::for_send(&EventId::new("01HY"), 0, 0)
        );
        assert_ne!(RetryKey::random(), RetryKey::random());
    }
}
