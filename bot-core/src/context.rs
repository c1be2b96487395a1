//! What a handler gets besides the event: replies, app state, conversation state, cancellation.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind};
use crate::event::{ConversationId, Event, EventId, Platform, UserId};
use crate::outbound::{Outbound, OutgoingMessage, PlatformMessage, Target};
use crate::state::{StateKey, StateStore, Versioned};

/// A map from type to one shared value of that type.
#[derive(Clone, Default)]
pub(crate) struct TypeMap(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl TypeMap {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    pub(crate) fn insert_arc<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.0.insert(TypeId::of::<T>(), value);
    }

    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>())?.downcast_ref()
    }

    pub(crate) fn get_arc<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.0.get(&TypeId::of::<T>())?.clone().downcast().ok()
    }
}

/// What every event's context shares: built once per bot.
pub(crate) struct Shared {
    pub(crate) outbounds: HashMap<Platform, Arc<dyn Outbound>>,
    pub(crate) app_state: TypeMap,
    pub(crate) clients: TypeMap,
    pub(crate) state_store: Arc<dyn StateStore>,
    /// The pool behind `cx.db()`, with the telemetry that records its waits.
    #[cfg(feature = "postgres")]
    pub(crate) db: Option<(crate::pg::PgPool, crate::telemetry::Telemetry)>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("outbounds", &self.outbounds.keys().collect::<Vec<_>>())
            .field("state_store", &self.state_store)
            .finish_non_exhaustive()
    }
}

/// The handler's view of the runtime for one event.
///
/// Each event gets a fresh `Context`: nothing of one event leaks into the next unless the app keeps
/// it in shared state. Cloning is cheap.
///
/// A context holds its event (a handle to the same block as the handler's [`Event`]), and so
/// the event's payload, which may share the whole request's body with the other events of that
/// request: a context kept past its handler (moved into a spawned task or a long-lived value)
/// keeps them alive. Keep the ids or the target it needs instead.
#[derive(Clone)]
pub struct Context {
    shared: Arc<Shared>,
    /// The event's dialogs, when a [`crate::dialog::Dialogs`] handles it.
    dialogs: Option<Arc<crate::dialog::engine::Session>>,
    /// What clones of the context share, the event's target among it: one allocation per
    /// attempt, and a context of four words, which a handler's future holds twice (an `async fn`
    /// keeps its arguments besides its locals).
    state: Arc<AttemptState>,
    attempt: u32,
}

/// The part of a context that its clones share.
struct AttemptState {
    /// The event being handled, a handle to the data the handler's event points to too: its
    /// platform, sender and where replies go (its conversation, channel, reply token and ids)
    /// are read from it, not copied for every attempt.
    event: Event,
    /// Sends made so far for this event.
    sends: AtomicU32,
    /// Made on first use, by the handler asking for it or the runtime cancelling: most attempts
    /// finish without either, and a token costs an allocation and a lock to make.
    cancel: std::sync::OnceLock<CancellationToken>,
}

impl AttemptState {
    fn token(&self) -> &CancellationToken {
        self.cancel.get_or_init(CancellationToken::new)
    }
}

/// The runtime's handle on an attempt's cancellation, made without a token until needed.
#[derive(Clone)]
pub(crate) struct AttemptCancel(Arc<AttemptState>);

impl AttemptCancel {
    /// Cancels the attempt: `cx.cancellation()` fires, whether the handler took it before or
    /// takes it after (both see the one token the cell holds).
    pub(crate) fn cancel(&self) {
        self.0.token().cancel();
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("platform", &self.state.event.platform)
            .field("target", &self.event_target())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose cancellation is `cancel` (the runtime uses [`Context::for_attempt`]).
    #[cfg(test)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        event: &Event,
        attempt: u32,
        cancel: CancellationToken,
    ) -> Self {
        let cx = Self::for_attempt(shared, event, attempt);
        let _ = cx.state.cancel.set(cancel);
        cx
    }

    /// A context for one attempt whose cancellation token is made only if someone asks for it
    /// or cancels it (through the returned handle).
    pub(crate) fn for_attempt(shared: Arc<Shared>, event: &Event, attempt: u32) -> Self {
        Self {
            shared,
            dialogs: None,
            state: Arc::new(AttemptState {
                event: event.clone(),
                sends: AtomicU32::new(0),
                cancel: std::sync::OnceLock::new(),
            }),
            attempt,
        }
    }

    /// Where replies to the event go, unnumbered: its conversation, channel, reply token and
    /// ids, made when a reply is (most attempts of a busy bot send nothing or once).
    fn event_target(&self) -> Target {
        let event = &self.state.event;
        Target {
            conversation: event.conversation.clone(),
            channel: event.channel.clone(),
            reply_token: event.reply_token.clone(),
            in_reply_to: Some(event.id.clone()),
            reply_to_message: event.message().and_then(|m| m.id.clone()),
            origin: Some(event.id.clone()),
            send_index: 0,
            message_tag: None,
        }
    }

    /// The runtime's handle to cancel this attempt.
    pub(crate) fn canceller(&self) -> AttemptCancel {
        AttemptCancel(self.state.clone())
    }

    /// The platform of the event being handled.
    pub fn platform(&self) -> &Platform {
        &self.state.event.platform
    }

    /// The conversation of the event being handled.
    pub fn conversation(&self) -> &ConversationId {
        &self.state.event.conversation
    }

    /// Who sent the event being handled, when the platform says (not for every kind of event:
    /// a LINE `unfollow` in a group, a Discord reaction removed by a moderator).
    pub fn sender(&self) -> Option<&UserId> {
        self.state.event.sender.as_ref()
    }

    /// The id of the event being handled.
    pub fn event_id(&self) -> Option<&EventId> {
        Some(&self.state.event.id)
    }

    /// Which attempt this is, starting at 1; above 1 the event is being retried.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Fires when the attempt times out or the runtime stops waiting for it at shutdown.
    ///
    /// Long handlers should select on it to stop early and cleanly.
    pub fn cancellation(&self) -> &CancellationToken {
        self.state.token()
    }

    /// The outbound client of the event's platform.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoOutbound`] when no adapter registered one for the platform.
    pub fn outbound(&self) -> Result<&Arc<dyn Outbound>, Error> {
        self.outbound_for(&self.state.event.platform)
    }

    fn outbound_for(&self, platform: &Platform) -> Result<&Arc<dyn Outbound>, Error> {
        self.shared
            .outbounds
            .get(platform)
            .ok_or_else(|| no_outbound(platform))
    }

    /// Replies to the event being handled (with its reply token where the platform has one).
    ///
    /// The send is numbered among the handler's sends ([`Target::send_index`]) when this is
    /// called, not when the returned future first runs: sends created in one order and awaited
    /// together (`join!`) keep the same numbers, and so the same idempotency keys, on every
    /// attempt of the handler.
    ///
    /// # Errors
    ///
    /// Fails when there is no client for the platform or the platform refuses the message.
    pub fn reply(
        &self,
        message: impl Into<OutgoingMessage>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        self.reply_all(vec![message.into()])
    }

    /// Replies with a platform's own message (a LINE Flex layout, a Discord modal or select
    /// menu, a Messenger media template), made with the adapters' typed builders.
    ///
    /// On its platform the message goes out as-is; on another platform its fallback goes out
    /// instead ([`PlatformMessage::with_fallback`]). Numbered when called, as [`Context::reply`].
    ///
    /// # Errors
    ///
    /// As [`Context::reply`]; the adapter refuses a message for another platform that has no
    /// fallback, before sending anything.
    pub fn reply_with(
        &self,
        message: impl Into<PlatformMessage>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        self.reply(OutgoingMessage::platform(message.into()))
    }

    /// Replies with several messages, in order, in one call where the platform allows it.
    /// Numbered when called, as [`Context::reply`].
    ///
    /// # Errors
    ///
    /// As [`Context::reply`].
    pub fn reply_all(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        let mut target = self.event_target();
        target.send_index = self.next_send_index();
        self.send_to(&self.state.event.platform, target, messages)
    }

    /// Sends a message to a conversation of the same platform, not as a reply, through the
    /// channel the event came through. Numbered when called, as [`Context::reply`].
    ///
    /// # Errors
    ///
    /// As [`Context::reply`].
    pub fn send(
        &self,
        conversation: impl Into<ConversationId>,
        message: impl Into<OutgoingMessage>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        let mut target = self.send_target(conversation);
        target.channel.clone_from(&self.state.event.channel);
        self.send_to(&self.state.event.platform, target, vec![message.into()])
    }

    /// Sends a message to a conversation on another platform. Numbered when called, as
    /// [`Context::reply`].
    ///
    /// # Errors
    ///
    /// As [`Context::reply`].
    pub fn send_on(
        &self,
        platform: Platform,
        conversation: impl Into<ConversationId>,
        message: impl Into<OutgoingMessage>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        let target = self.send_target(conversation);
        let message = message.into();
        async move { self.send_to(&platform, target, vec![message]).await }
    }

    /// Sends `messages` to `target`, numbered already, through `platform`'s client.
    // Not an `async fn`: one of those keeps its arguments twice while it waits (as they came and
    // as its body's locals), and the 248-byte target with them, in every handler that sends.
    fn send_to<'a>(
        &'a self,
        platform: &'a Platform,
        target: Target,
        messages: Vec<OutgoingMessage>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        // The client's future is made here and handed over as it is: the handler holds a
        // pointer to it while the call is in flight, not the target (248 bytes) and the
        // messages besides it, and the client keeps of the target only what it needs. No call
        // is made before the first poll: a client's `send_owned` builds its future (and may
        // prepare what needs no I/O, as LINE renders the messages) and does nothing else.
        match self.shared.outbounds.get(platform) {
            Some(outbound) => (**outbound).send_owned(target, messages),
            None => Box::pin(std::future::ready(Err(no_outbound(platform)))),
        }
    }

    /// The next number among this attempt's sends: taken when a send is created, so that the
    /// numbers follow the order of the handler's code, not the order its futures first run in.
    fn next_send_index(&self) -> u32 {
        self.state.sends.fetch_add(1, AtomicOrdering::Relaxed)
    }

    /// A send to `conversation` that is not a reply, numbered among this handler's sends.
    fn send_target(&self, conversation: impl Into<ConversationId>) -> Target {
        let mut target = Target::conversation(conversation);
        target.origin = Some(self.state.event.id.clone());
        target.send_index = self.next_send_index();
        target
    }

    /// Shows a typing indicator in the event's conversation.
    ///
    /// # Errors
    ///
    /// As [`Context::reply`].
    pub async fn typing(&self) -> Result<(), Error> {
        self.outbound()?.typing_in(&self.event_target()).await
    }

    /// The shared app state of type `T`, registered with [`crate::BotBuilder::state`].
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.shared.app_state.get::<T>()
    }

    /// An adapter's typed API client (for example `cx.client::<LineClient>()`).
    pub fn client<C: Send + Sync + 'static>(&self) -> Option<Arc<C>> {
        self.shared.clients.get_arc::<C>()
    }

    /// A connection from the bot's PostgreSQL pool ([`crate::BotBuilder::database`]); it goes
    /// back to the pool when dropped, so hold it only while you use it.
    ///
    /// When every connection is busy this waits, up to the pool's wait time-out; each wait is
    /// recorded in the `bot.db.pool.wait` histogram.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the bot has no pool; [`ErrorKind::Timeout`] when no connection
    /// became free in time; [`ErrorKind::Io`] when a connection cannot be opened (the database is
    /// down or restarting). Both are retryable: returned from the handler, the attempt is retried
    /// with back-off instead of dead-lettered.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn db(&self) -> Result<crate::pg::PgConnection, Error> {
        let (pool, telemetry) = self.shared.db.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "no database pool; give the bot one with BotBuilder::database",
            )
        })?;
        let started = tokio::time::Instant::now();
        let got = pool
            .get_measured(ErrorKind::Io, "getting a connection for a handler")
            .await;
        telemetry.db_pool_wait(started.elapsed());
        got.map(|(conn, _)| conn)
    }

    /// The state of the event's conversation: one document per conversation (on Discord a
    /// channel, shared by everyone in it).
    pub fn conversation_state(&self) -> StateHandle<'_> {
        self.state_at(StateKey::new(
            self.state.event.platform.clone(),
            self.state.event.conversation.clone(),
        ))
    }

    /// The state of the event's sender on this platform, the same in every conversation.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::State`] when the event has no sender ([`Context::sender`]).
    pub fn user_state(&self) -> Result<StateHandle<'_>, Error> {
        let user = self.require_sender()?;
        Ok(self.state_at(StateKey::user(self.state.event.platform.clone(), user)))
    }

    /// The state of the event's sender within the event's conversation: each member of a
    /// group or Discord channel has their own.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::State`] when the event has no sender ([`Context::sender`]).
    pub fn user_in_conversation_state(&self) -> Result<StateHandle<'_>, Error> {
        let user = self.require_sender()?;
        Ok(self.state_at(StateKey::user_in_conversation(
            self.state.event.platform.clone(),
            self.state.event.conversation.clone(),
            user,
        )))
    }

    /// The state under an app-wide key of the app's own, shared by every platform,
    /// conversation and user.
    pub fn app_key_state(&self, name: impl Into<String>) -> StateHandle<'_> {
        self.state_at(StateKey::app(name))
    }

    /// The state under any `key`, for example another user's.
    pub fn state_at(&self, key: StateKey) -> StateHandle<'_> {
        StateHandle {
            store: &*self.shared.state_store,
            key,
            ttl: None,
        }
    }

    /// Where the conversation stands in its dialogs (the innermost open dialog and its step),
    /// when the event is handled under [`crate::dialog::Dialogs`] and a dialog is open.
    pub fn dialog(&self) -> Option<&crate::dialog::DialogPosition> {
        self.dialogs.as_deref()?.position()
    }

    /// Begins the dialog named `name` in this conversation (or for this user in it, with
    /// [`crate::dialog::Dialogs::per_user`]), replacing any open one: asks its first step.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] outside [`crate::dialog::Dialogs`] or for an unknown dialog;
    /// [`ErrorKind::StateConflict`] when another event of the conversation wrote its dialogs
    /// first (retried by the runtime); as [`Context::reply`] for the question.
    pub async fn begin_dialog(&self, name: &str) -> Result<(), Error> {
        let session = self.dialogs.as_deref().ok_or_else(|| {
            Error::config(format!(
                "dialog {name:?} begun outside Dialogs: give the bot Dialogs::new(router) as its handler"
            ))
        })?;
        session.begin(self, name).await
    }

    /// The same context with the event's dialogs.
    pub(crate) fn with_dialog_session(&self, session: Arc<crate::dialog::engine::Session>) -> Self {
        let mut cx = self.clone();
        cx.dialogs = Some(session);
        cx
    }

    /// The bot's state store.
    pub(crate) fn state_store(&self) -> &dyn StateStore {
        &*self.shared.state_store
    }

    fn require_sender(&self) -> Result<UserId, Error> {
        self.state.event.sender.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::State,
                format!(
                    "a {} event without a sender has no user state",
                    self.state.event.platform
                ),
            )
        })
    }
}

/// The state under one [`StateKey`], typed, with optimistic version checks; made by
/// [`Context::conversation_state`], [`Context::user_state`] and their kin.
#[derive(Debug)]
pub struct StateHandle<'a> {
    store: &'a dyn StateStore,
    key: StateKey,
    ttl: Option<Duration>,
}

/// The state of one conversation: a [`StateHandle`].
pub type ConversationState<'a> = StateHandle<'a>;

impl StateHandle<'_> {
    /// The key this handle reads and writes.
    pub fn key(&self) -> &StateKey {
        &self.key
    }

    /// Writes through this handle expire `ttl` after each write: a booking left half-way is
    /// forgotten after a day, say. Default: never.
    #[must_use]
    pub fn expire_after(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Reads the state as `T`, with its version.
    ///
    /// # Errors
    ///
    /// Fails when the store fails or the stored JSON is not a `T`.
    pub async fn load<T: DeserializeOwned>(&self) -> Result<Option<Versioned<T>>, Error> {
        let Some(v) = self.store.load(&self.key).await? else {
            return Ok(None);
        };
        let value = serde_json::from_value(v.value).map_err(|e| {
            Error::new(
                ErrorKind::State,
                format!("stored state of {} has another shape", self.key),
            )
            .with_source(e)
        })?;
        Ok(Some(Versioned {
            value,
            version: v.version,
        }))
    }

    /// Writes the state if it is still at `expected` (`None`: if there is none yet).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StateConflict`] when another write came first.
    pub async fn save<T: Serialize>(&self, value: &T, expected: Option<u64>) -> Result<u64, Error> {
        let json = serde_json::to_value(value).map_err(|e| {
            Error::new(
                ErrorKind::State,
                format!("state of {} is not serialisable", self.key),
            )
            .with_source(e)
        })?;
        (self.store)
            .save_expiring(&self.key, json, expected, self.ttl)
            .await
    }

    /// Reads, changes and writes the state, retrying on conflicts (up to 16 times).
    /// A missing state starts as `T::default()`. Returns the value written.
    ///
    /// # Errors
    ///
    /// Fails when the store fails, or with [`ErrorKind::StateConflict`] when every try lost.
    pub async fn update<T, F>(&self, mut change: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Default,
        F: FnMut(&mut T),
    {
        let mut last = None;
        for _ in 0..16 {
            let (mut value, version) = match self.load::<T>().await? {
                Some(v) => (v.value, Some(v.version)),
                None => (T::default(), None),
            };
            change(&mut value);
            match self.save(&value, version).await {
                Ok(_) => return Ok(value),
                Err(e) if e.is_conflict() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::StateConflict, "state update lost")))
    }

    /// Deletes the state if it is at `expected`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StateConflict`] when another write came first.
    pub async fn clear(&self, expected: u64) -> Result<bool, Error> {
        self.store.delete(&self.key, expected).await
    }
}

/// The error of a send to a platform the bot has no client for.
fn no_outbound(platform: &Platform) -> Error {
    Error::new(
        ErrorKind::NoOutbound,
        format!("no outbound client for platform {platform}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Platform;
    use crate::state::MemoryStateStore;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            outbounds: HashMap::new(),
            app_state: TypeMap::default(),
            clients: TypeMap::default(),
            state_store: Arc::new(MemoryStateStore::new()),
            #[cfg(feature = "postgres")]
            db: None,
        })
    }

    #[test]
    fn a_send_holds_its_target_once() {
        let event = Event::text(Platform::TEST, "a", "hi");
        let cx = Context::for_attempt(shared(), &event, 1);
        let reply = cx.reply("ok");
        let target = std::mem::size_of::<Target>();
        // An `async fn` kept the target twice while it waited (624 bytes in release).
        assert!(
            std::mem::size_of_val(&reply) < target + 96,
            "a reply's future is {} bytes, its target {target}",
            std::mem::size_of_val(&reply)
        );
    }

    #[test]
    fn a_lazily_made_token_sees_a_cancel_from_before_or_after_it_was_asked_for() {
        let event = Event::text(Platform::TEST, "a", "hi");
        // Cancelled before the handler asked: the token it gets is already cancelled.
        let cx = Context::for_attempt(shared(), &event, 1);
        cx.canceller().cancel();
        assert!(cx.cancellation().is_cancelled());
        // Asked first (by a clone), cancelled after: the same token fires.
        let cx = Context::for_attempt(shared(), &event, 1);
        let token = cx.clone().cancellation().clone();
        assert!(!token.is_cancelled());
        cx.canceller().cancel();
        assert!(token.is_cancelled() && cx.cancellation().is_cancelled());
        // Each attempt has its own.
        let other = Context::for_attempt(shared(), &event, 2);
        assert!(!other.cancellation().is_cancelled());
    }

    #[tokio::test]
    async fn reply_with_replies_with_the_platform_message() {
        use crate::outbound::Rich;
        let sticker = PlatformMessage::new(
            Platform::TEST,
            serde_json::json!({"type": "sticker", "packageId": "1", "stickerId": "2"}),
        )
        .with_fallback("a sticker");
        let sent_message = sticker.clone();
        let bot = crate::testing::TestBot::builder()
            .handler(move |cx: Context, _event: Event| {
                let sticker = sent_message.clone();
                async move { cx.reply_with(sticker).await }
            })
            .build()
            .unwrap();
        bot.send(crate::testing::text("U1", "hi")).await.unwrap();
        let sent = bot.wait_for(1).await;
        assert!(sent[0].target.is_reply());
        assert_eq!(sent[0].messages.len(), 1);
        assert_eq!(sent[0].messages[0].rich, Some(Rich::Platform(sticker)));
        bot.shutdown().await;
    }

    /// On Discord a conversation is a channel: state per user in it keeps two members'
    /// bookings apart, where conversation state mixes them.
    #[tokio::test]
    async fn each_member_of_a_channel_has_their_own_state() {
        #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
        struct Counts {
            mine: u32,
        }
        let bot = crate::testing::TestBot::builder()
            .platforms([Platform::DISCORD])
            .handler(|cx: Context, _event: Event| async move {
                let shared: Counts = cx
                    .conversation_state()
                    .update(|c: &mut Counts| c.mine += 1)
                    .await?;
                let own: Counts = (cx.user_in_conversation_state()?)
                    .update(|c: &mut Counts| c.mine += 1)
                    .await?;
                let everywhere: Counts = cx
                    .user_state()?
                    .update(|c: &mut Counts| c.mine += 1)
                    .await?;
                let app: Counts = cx
                    .app_key_state("total")
                    .update(|c: &mut Counts| c.mine += 1)
                    .await?;
                cx.reply(format!(
                    "{} {} {} {}",
                    shared.mine, own.mine, everywhere.mine, app.mine
                ))
                .await
            })
            .build()
            .unwrap();
        let from = |user: &str, channel: &str| {
            Event::text(Platform::DISCORD, channel, "hi").with_sender(user)
        };
        for event in [
            from("alice", "c1"),
            from("bob", "c1"),
            from("alice", "c1"),
            from("alice", "c2"),
        ] {
            bot.send(event).await.unwrap();
            bot.idle().await;
        }
        assert_eq!(bot.texts(), ["1 1 1 1", "2 1 1 2", "3 2 2 3", "1 1 3 4"]);
        // No sender, no user state: a clear error, not someone else's state.
        let no_sender = Event::text(Platform::DISCORD, "c1", "hi");
        let cx = Context::for_attempt(shared(), &no_sender, 1);
        let e = cx.user_state().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::State);
        assert!(e.to_string().contains("without a sender"), "{e}");
        bot.shutdown().await;
    }
}
