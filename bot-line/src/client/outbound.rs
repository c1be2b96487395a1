//! [`LineClient`] as the [`Outbound`] of LINE events: a reply, the rest pushed, the
//! reply-to-push fallback, and the memory that keeps a retried handler from sending twice.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use async_trait::async_trait;
use bot_core::api::Dispatch;
use bot_core::event::{ConversationId, EventId, ReplyToken};
use bot_core::outbound::{OutgoingMessage, Target};
use bot_core::{Outbound, Platform};
use futures::FutureExt as _;
use http::StatusCode;

use super::builder::LineClient;
use super::message::RetryKey;
use crate::error::{Error, ErrorKind};
use crate::model::send::{MAX_MESSAGES_PER_CALL, Message};

/// Parts of a send pushed after its reply are numbered from here, so that their retry keys never
/// collide with those of a fallback that pushed the whole send.
const AFTER_REPLY_PART: usize = 1_000;
/// How long the loading animation of a send lasts, unless the send's messages end it sooner.
const LOADING_SECONDS: u32 = 20;

/// What a LINE send keeps of its [`Target`] while it is in flight: the conversation (for the
/// loading animation and pushes), the reply token, and the send's name among its handler's sends
/// (for the reply's mark and the pushes' retry keys). A target's other parts (the channel, which
/// chose this client; the event and message replied to; a Messenger tag) serve no LINE call.
struct LineTarget {
    conversation: ConversationId,
    reply_token: Option<ReplyToken>,
    origin: Option<EventId>,
    send_index: u32,
}

impl LineTarget {
    /// The parts of `target` a send needs, copied (an id inline in its handle, or a reference
    /// count).
    fn copied(target: &Target) -> Self {
        Self {
            conversation: target.conversation.clone(),
            reply_token: target.reply_token.clone(),
            origin: target.origin.clone(),
            send_index: target.send_index,
        }
    }

    /// The parts of `target` a send needs, moved out of it.
    fn taken(target: Target) -> Self {
        Self {
            conversation: target.conversation,
            reply_token: target.reply_token,
            origin: target.origin,
            send_index: target.send_index,
        }
    }
}

impl LineClient {
    /// The loading animation for a send, in one-to-one chats, given up at `deadline`.
    async fn loading_until(
        &self,
        conversation: &ConversationId,
        deadline: Instant,
    ) -> Result<(), Error> {
        if conversation.as_str().starts_with('U') {
            self.show_loading_until(conversation.as_str(), LOADING_SECONDS, Some(deadline))
                .await?;
        }
        Ok(())
    }

    /// Pushes `messages` in calls of five, part `first_part` on, each with the retry key of its
    /// part of this send.
    async fn push_all(
        &self,
        target: &LineTarget,
        messages: &[Message],
        first_part: usize,
        deadline: Instant,
    ) -> Result<(), Error> {
        let to = target.conversation.as_str();
        for (i, chunk) in messages.chunks(MAX_MESSAGES_PER_CALL).enumerate() {
            let key = target
                .origin
                .as_ref()
                .map(|e| RetryKey::for_send(e, target.send_index, first_part + i));
            self.push_until(to, chunk, key, Some(deadline)).await?;
        }
        Ok(())
    }

    /// Sends `messages` for `target`, after the loading animation when `typing`: a reply of up
    /// to five when there is a reply token, the rest (or all, without a token) pushed,
    /// everything under one deadline.
    // Not an `async fn`, which would keep its arguments twice, and shaped for the seconds the
    // reply's answer takes, which every running event spends here: the paths a reply rarely
    // takes (the loading animation, pushes, a fallback) are boxed apart, and nothing is kept
    // across the reply's call that can be made again after it (the reply mark's key, the rest's
    // slice).
    #[allow(clippy::manual_async_fn)] // see above: the `async fn` is what this avoids
    fn send_line(
        &self,
        target: LineTarget,
        mut messages: Vec<Message>,
        typing: bool,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        async move {
            let target = &target;
            let deadline = self.api.deadline_from_now();
            if typing {
                // First: one reply call takes the messages.
                Box::pin(self.loading_until(&target.conversation, deadline)).await?;
            }
            if messages.is_empty() {
                return Ok(());
            }
            let Some(token) = &target.reply_token else {
                return Box::pin(self.push_all(target, &messages, 0, deadline)).await;
            };
            let fallback = self.shared.push_fallback;
            let split = messages.len().min(MAX_MESSAGES_PER_CALL);
            if split < messages.len() && !fallback {
                return Err(Error::invalid_request(format!(
                    "line: a reply carries at most {MAX_MESSAGES_PER_CALL} messages, got {}; send \
                     fewer or enable push_fallback to push the rest",
                    messages.len()
                )));
            }
            // The reply's key among the replies remembered: made when needed rather than held.
            let send = || {
                target
                    .origin
                    .as_ref()
                    .map(|event| (event.clone(), target.send_index))
            };
            // Held in flight for the time of the call: a reply cut off after its request was
            // written (the handler timed out) may have used the token, and its retry must not
            // push the messages a second time; one cut off before it left is forgotten. A
            // concurrent attempt of this handler (a redelivery while this one runs) waits here
            // for the outcome. After an attempt that may have used the token the key is held too
            // (and stays remembered): a sibling retry then finds this one's reply in `replied`
            // instead of using the token at the same time and being refused.
            let dispatch = Dispatch::new();
            // Boxed: the wait for a concurrent attempt's outcome is a moment before the call,
            // and its state would otherwise take room in every reply's future for the call's
            // seconds.
            let mark = match send() {
                Some(send) => Some(
                    Box::pin((self.shared.maybe_replied).take(send, &dispatch, deadline)).await?,
                ),
                None => None,
            };
            let tried_before = mark.as_ref().is_some_and(|mark| mark.was_sent());
            if let Some(send) = send()
                && self.shared.replied.contains(&send)
            {
                if let Some(mark) = mark {
                    mark.forget();
                }
                // An earlier attempt of this handler made this reply already; only the rest may
                // be missing, and its pushes carry the same retry keys as then.
                return Box::pin(self.push_all(
                    target,
                    &messages[split..],
                    AFTER_REPLY_PART,
                    deadline,
                ))
                .await;
            }
            // Made here, not earlier: a call held across the wait for the mark would take its
            // room in this future twice.
            let reply = super::message::reply_call(token.expose(), &messages[..split])?;
            // From here the messages serve only what may be pushed: the rest, or, with
            // push_fallback, all of them instead of the reply. Not held for the seconds of the
            // call otherwise.
            let rest_from = if fallback {
                split
            } else {
                messages = messages.split_off(split);
                0
            };
            let replied = dispatch.scope(self.reply_with(reply, Some(deadline))).await;
            match replied {
                Ok(_) => {
                    // Made before the mark ends: an attempt waiting on the mark then sees it.
                    if let Some(send) = send() {
                        self.shared.replied.insert(send);
                    }
                    if let Some(mark) = mark {
                        mark.forget();
                    }
                }
                // The token may have been used by an attempt whose answer was lost: pushing the
                // reply's messages could show them twice. The rest were never part of it.
                Err(e) if e.is_invalid_reply_token() && (e.attempts() > 1 || tried_before) => {
                    if let Some(mark) = mark {
                        mark.keep();
                    }
                    if rest_from < messages.len() {
                        Box::pin(self.push_all(
                            target,
                            &messages[rest_from..],
                            AFTER_REPLY_PART,
                            deadline,
                        ))
                        .await?;
                    }
                    return Err(Error::new(
                        ErrorKind::InvalidReplyToken,
                        "line: the reply token was refused after an attempt that may have been \
                         delivered; not pushing the reply's messages",
                    )
                    .with_platform(Platform::LINE)
                    .with_attempts(e.attempts())
                    .with_maybe_delivered(true)
                    .with_source(e));
                }
                Err(e) if e.is_invalid_reply_token() && fallback => {
                    if let Some(mark) = mark {
                        mark.forget();
                    }
                    tracing::info!(
                        conversation = target.conversation.as_str(),
                        "line reply token refused; pushing instead"
                    );
                    return Box::pin(self.push_all(target, &messages, 0, deadline)).await;
                }
                Err(e) => {
                    if dispatch.happened() && may_have_reached_line(&e) {
                        if let Some(mark) = mark {
                            mark.keep();
                        }
                    } else if let Some(mark) = mark {
                        mark.forget();
                    }
                    return Err(e);
                }
            }
            if rest_from == messages.len() {
                return Ok(());
            }
            Box::pin(self.push_all(target, &messages[rest_from..], AFTER_REPLY_PART, deadline))
                .await
        }
    }
}

impl LineClient {
    /// The send of `messages` to `target`, rendered as LINE messages first (a message LINE cannot
    /// carry fails here, before any call).
    fn send_rendered(
        &self,
        target: LineTarget,
        messages: &[OutgoingMessage],
    ) -> Pin<Box<dyn Future<Output = Result<(), bot_core::Error>> + Send + '_>> {
        let (typing, line_messages) = match crate::render::render_send(messages) {
            Ok(rendered) => rendered,
            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
        };
        Box::pin(
            self.send_line(target, line_messages, typing)
                .map(|sent| Ok(sent?)),
        )
    }
}

/// Whether a failed call may have been carried out by LINE: it timed out or broke after it was
/// sent, or a server error other than 503 does not say that nothing was done.
fn may_have_reached_line(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Timeout | ErrorKind::Transport => true,
        ErrorKind::Server => e.status() != Some(StatusCode::SERVICE_UNAVAILABLE),
        _ => false,
    }
}

#[async_trait]
impl Outbound for LineClient {
    fn platform(&self) -> Platform {
        Platform::LINE
    }

    // Not `async fn`s: the messages are rendered before the future is made (not held in it
    // for the seconds the call may take), and the box holds the send's own future, nothing
    // around it.
    fn send<'a, 'b, 'f>(
        &'a self,
        target: &'b Target,
        messages: Vec<OutgoingMessage>,
    ) -> Pin<Box<dyn Future<Output = Result<(), bot_core::Error>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        self.send_rendered(LineTarget::copied(target), &messages)
    }

    // The target's parts a LINE call needs move into the send's future; the rest (about half
    // of a `Target`) is dropped here instead of being held by the handler for the call.
    fn send_owned<'a, 'f>(
        &'a self,
        target: Target,
        messages: Vec<OutgoingMessage>,
    ) -> Pin<Box<dyn Future<Output = Result<(), bot_core::Error>> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        self.send_rendered(LineTarget::taken(target), &messages)
    }

    /// The loading animation, in one-to-one chats (LINE has none for groups and rooms).
    async fn typing(&self, conversation: &ConversationId) -> Result<(), bot_core::Error> {
        let deadline = self.api.deadline_from_now();
        Ok(self.loading_until(conversation, deadline).await?)
    }
}
