//! Handlers: the user code that runs for each event, and their tower [`Service`] view.
//!
//! Any `async fn(Context, Event) -> Result<(), E>` is a [`Handler`]. So is a [`crate::Router`], and
//! so is any tower service over [`HandlerRequest`], which is how tower layers (rate limits,
//! concurrency limits, your own middleware) wrap handlers: see [`HandlerExt::layer`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use async_trait::async_trait;
use tower::{Layer, Service, ServiceExt};

use crate::context::Context;
use crate::error::BoxError;
use crate::event::Event;

/// User code that handles events.
///
/// Implemented for every `async fn(Context, Event) -> Result<(), E>` where `E` converts into a
/// boxed error, for [`crate::Router`], and for tower services through [`HandlerExt::layer`].
///
/// An `Err` (or a panic, or a time-out) fails the attempt: the runtime retries it with backoff and
/// dead-letters it after the last attempt. Return [`Permanent`] to skip the retries.
///
/// # Examples
///
/// ```
/// use bot_core::{Context, Event, Error};
///
/// async fn echo(cx: Context, event: Event) -> Result<(), Error> {
///     if let Some(text) = event.text_content() {
///         cx.reply(text).await?;
///     }
///     Ok(())
/// }
/// # fn assert_handler<H: bot_core::Handler>(_: H) {}
/// # assert_handler(echo);
/// ```
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a bot handler",
    note = "a handler is an `async fn(Context, Event) -> Result<(), E>` where E: Into<BoxError>, a `Router`, or a type implementing `Handler`"
)]
pub trait Handler: Send + Sync + 'static {
    /// Handles one event.
    ///
    /// # Errors
    ///
    /// Any error fails this attempt.
    async fn call(&self, cx: Context, event: Event) -> Result<(), BoxError>;

    /// The time-out for `event` if this handler wants one other than the runtime's default.
    fn timeout(&self, _event: &Event) -> Option<Duration> {
        None
    }
}

/// The future of a handler's call, as `#[async_trait]` writes it.
type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

impl<F, Fut, E> Handler for F
where
    F: Fn(Context, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    // Written out rather than with #[async_trait]: an `async fn` keeps its arguments as well as
    // the future it made of them, so every running handler held its `Context` and `Event` twice
    // (816 bytes) besides the copies inside the function's own future.
    fn call<'life0, 'async_trait>(
        &'life0 self,
        cx: Context,
        event: Event,
    ) -> CallFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(futures::TryFutureExt::map_err(
            (self)(cx, event),
            Into::into,
        ))
    }
}

/// A shared, type-erased handler.
#[derive(Clone)]
pub struct BoxHandler(Arc<dyn Handler>);

impl BoxHandler {
    /// Erases the type of `handler`.
    pub fn new(handler: impl Handler) -> Self {
        Self(Arc::new(handler))
    }
}

impl fmt::Debug for BoxHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxHandler(..)")
    }
}

impl Handler for BoxHandler {
    // Written out rather than with #[async_trait] so that the inner handler's boxed future is
    // returned as it is instead of being boxed a second time on every event.
    fn call<'life0, 'async_trait>(
        &'life0 self,
        cx: Context,
        event: Event,
    ) -> CallFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.0.call(cx, event)
    }

    fn timeout(&self, event: &Event) -> Option<Duration> {
        self.0.timeout(event)
    }
}

/// An error that must not be retried: the event goes straight to the dead letters.
///
/// ```
/// use bot_core::{Context, Event, handler::Permanent};
///
/// async fn handler(_cx: Context, event: Event) -> Result<(), Permanent> {
///     Err(Permanent::new(format!("cannot handle {}", event.kind.name())))
/// }
/// # fn assert_handler<H: bot_core::Handler>(_: H) {}
/// # assert_handler(handler);
/// ```
#[derive(Debug)]
pub struct Permanent(BoxError);

impl Permanent {
    /// Marks `error` as not worth retrying.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(error.into())
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Whether a failed attempt with `error` may be retried.
pub(crate) fn is_retryable(error: &BoxError) -> bool {
    if error.is::<Permanent>() {
        return false;
    }
    match error.downcast_ref::<crate::Error>() {
        Some(e) => e.is_retryable(),
        None => true,
    }
}

/// The request type of a handler seen as a tower [`Service`].
#[derive(Debug)]
pub struct HandlerRequest {
    /// The event's context.
    pub cx: Context,
    /// The event.
    pub event: Event,
}

/// A [`Handler`] as a tower [`Service`]. Always ready; cloning is cheap.
#[derive(Debug)]
pub struct HandlerService<H> {
    handler: Arc<H>,
}

impl<H> Clone for HandlerService<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<H: Handler> Service<HandlerRequest> for HandlerService<H> {
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<Result<(), BoxError>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HandlerRequest) -> Self::Future {
        let handler = self.handler.clone();
        Box::pin(async move { handler.call(req.cx, req.event).await })
    }
}

/// A tower [`Service`] over [`HandlerRequest`] used as a [`Handler`].
///
/// Each call clones the service and waits for it to be ready, so layers that reserve capacity in
/// `poll_ready` (concurrency and rate limits) work as designed.
#[derive(Debug, Clone)]
pub struct ServiceHandler<S> {
    service: S,
}

impl<S> ServiceHandler<S> {
    /// Wraps `service`.
    pub fn new(service: S) -> Self {
        Self { service }
    }
}

#[async_trait]
impl<S> Handler for ServiceHandler<S>
where
    S: Service<HandlerRequest, Response = ()> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    async fn call(&self, cx: Context, event: Event) -> Result<(), BoxError> {
        let service = self.service.clone();
        service
            .oneshot(HandlerRequest { cx, event })
            .await
            .map_err(Into::into)
    }
}

/// A handler with its own time-out, overriding [`crate::Limits::handler_timeout`].
#[derive(Debug, Clone)]
pub struct WithTimeout<H> {
    handler: H,
    timeout: Duration,
}

#[async_trait]
impl<H: Handler> Handler for WithTimeout<H> {
    async fn call(&self, cx: Context, event: Event) -> Result<(), BoxError> {
        self.handler.call(cx, event).await
    }

    fn timeout(&self, _event: &Event) -> Option<Duration> {
        Some(self.timeout)
    }
}

/// Combinators for every [`Handler`].
pub trait HandlerExt: Handler + Sized {
    /// This handler as a tower [`Service`].
    fn into_service(self) -> HandlerService<Self> {
        HandlerService {
            handler: Arc::new(self),
        }
    }

    /// Wraps this handler in a tower [`Layer`].
    ///
    /// The layered handler uses the runtime's default time-out: call
    /// [`HandlerExt::with_timeout`] on the result, not before, to give it its own.
    ///
    /// ```
    /// use std::time::Duration;
    /// use bot_core::{Context, Event, Error, HandlerExt};
    ///
    /// async fn slow(_cx: Context, _e: Event) -> Result<(), Error> { Ok(()) }
    /// // Every call clones the layered service, so limits must be shared between clones:
    /// // `GlobalConcurrencyLimitLayer`, not `ConcurrencyLimitLayer` (which limits each clone).
    /// let limited = slow.layer(tower::limit::GlobalConcurrencyLimitLayer::new(8));
    /// # fn assert_handler<H: bot_core::Handler>(_: H) {}
    /// # assert_handler(limited);
    /// ```
    fn layer<L>(self, layer: L) -> ServiceHandler<L::Service>
    where
        L: Layer<HandlerService<Self>>,
    {
        ServiceHandler::new(layer.layer(self.into_service()))
    }

    /// Gives this handler its own time-out (a long report, a quick command).
    fn with_timeout(self, timeout: Duration) -> WithTimeout<Self> {
        WithTimeout {
            handler: self,
            timeout,
        }
    }
}

impl<H: Handler> HandlerExt for H {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn permanent_and_config_errors_are_not_retried() {
        let p: BoxError = Box::new(Permanent::new("nope"));
        assert!(!is_retryable(&p));
        let c: BoxError = Box::new(Error::config("x"));
        assert!(!is_retryable(&c));
        let io: BoxError = Box::new(std::io::Error::other("x"));
        assert!(is_retryable(&io));
    }

    #[test]
    fn with_timeout_overrides() {
        async fn h(_cx: Context, _e: Event) -> Result<(), Error> {
            Ok(())
        }
        let e = Event::text(crate::Platform::TEST, "c", "x");
        assert_eq!(h.timeout(&e), None);
        let t = h.with_timeout(Duration::from_secs(5));
        assert_eq!(t.timeout(&e), Some(Duration::from_secs(5)));
    }
}
