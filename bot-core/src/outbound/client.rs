//! [`Outbound`]: the trait each adapter's API client implements.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use super::{OutgoingMessage, Target};
use crate::error::Error;
use crate::event::{ConversationId, Platform};

/// A platform's outbound API, as the runtime sees it.
///
/// Implementations own their rate limiting and retries: the runtime calls them from many handler
/// tasks at once.
#[async_trait]
pub trait Outbound: Send + Sync + fmt::Debug + 'static {
    /// The platform this client talks to.
    fn platform(&self) -> Platform;

    /// Sends `messages`, in order, to `target`.
    ///
    /// # Errors
    ///
    /// Fails when the platform refuses the call or cannot be reached after the client's retries.
    async fn send(&self, target: &Target, messages: Vec<OutgoingMessage>) -> Result<(), Error>;

    /// Sends `messages`, in order, to `target`, which the send takes: what a handler's sends
    /// ([`crate::Context::reply`], `reply_all`, `reply_with` and [`crate::Context::send`], when
    /// they are called; `send_on` at its first poll) call. A client overrides it to keep in its
    /// future only the parts of the target it needs while the call is in flight, instead of the
    /// caller holding the whole target for it; the default keeps the target and calls
    /// [`Outbound::send`].
    ///
    /// It is called when the handler's send is created, not when it is awaited: an override
    /// builds its future and may prepare what needs no I/O (LINE renders the messages), but
    /// makes no call, numbers nothing and reserves nothing before its future is polled. A
    /// wrapper that forwards [`Outbound::send`] to another client forwards this one too (as
    /// `Arc<T>` and [`crate::outbound::Channels`] do), or the inner client's override is
    /// bypassed (the send still works, holding the whole target).
    ///
    /// # Errors
    ///
    /// As [`Outbound::send`].
    async fn send_owned(
        &self,
        target: Target,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), Error> {
        self.send(&target, messages).await
    }

    /// Shows a typing indicator in the conversation, where the platform has one.
    ///
    /// # Errors
    ///
    /// Fails like [`Outbound::send`]; the default does nothing and succeeds.
    async fn typing(&self, _conversation: &ConversationId) -> Result<(), Error> {
        Ok(())
    }

    /// Shows a typing indicator in `target`'s conversation through `target`'s channel; what
    /// [`crate::Context::typing`] calls. The default calls [`Outbound::typing`]; adapters that
    /// serve several channels pick the channel's client.
    ///
    /// # Errors
    ///
    /// As [`Outbound::typing`].
    async fn typing_in(&self, target: &Target) -> Result<(), Error> {
        self.typing(&target.conversation).await
    }
}

#[async_trait]
impl<T: Outbound + ?Sized> Outbound for std::sync::Arc<T> {
    fn platform(&self) -> Platform {
        (**self).platform()
    }

    // Not `async fn`s: the inner client's boxed future is handed on as it is, not boxed again.
    fn send<'a, 'b, 'f>(
        &'a self,
        target: &'b Target,
        messages: Vec<OutgoingMessage>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        (**self).send(target, messages)
    }

    fn send_owned<'a, 'f>(
        &'a self,
        target: Target,
        messages: Vec<OutgoingMessage>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        (**self).send_owned(target, messages)
    }

    async fn typing(&self, conversation: &ConversationId) -> Result<(), Error> {
        (**self).typing(conversation).await
    }

    async fn typing_in(&self, target: &Target) -> Result<(), Error> {
        (**self).typing_in(target).await
    }
}
