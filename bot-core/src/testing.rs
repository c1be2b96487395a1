//! Drive a bot with events and collect what it sent, without any network.
//!
//! [`TestBot`] builds a real [`Bot`] (queue, supervisor, retries, time-outs) whose platforms answer
//! through [`RecordingOutbound`]s, which record every message instead of calling an API. Events go
//! in with [`TestBot::send`]; [`text`], [`command`] and [`postback`] make them on
//! [`Platform::TEST`], and [`text_on`], [`postback_on`], [`quick_reply_tap_on`],
//! [`button_press_on`], [`component_on`], [`command_on`], [`followed_on`], [`joined_on`],
//! [`edited_on`] and [`deleted_on`] every kind of event on any platform, as its adapter
//! delivers it. [`TestBotBuilder::platform_rules`] makes a test bot refuse what a platform's
//! client would (LINE's four buttons at most, say), with the client's error.
//!
//! # Examples
//!
//! ```
//! use bot_core::testing::{self, TestBot};
//! use bot_core::{Context, Error, Event, Router};
//!
//! async fn ping(cx: Context, _event: Event) -> Result<(), Error> {
//!     cx.reply("pong").await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! // In a `#[tokio::test]`:
//! let bot = TestBot::builder().handler(Router::new().command("ping", ping)).build()?;
//! bot.send(testing::text("alice", "/ping")).await?;
//! bot.wait_for(1).await;
//! assert_eq!(bot.texts(), ["pong"]);
//! # bot.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Handlers that may send nothing are awaited with [`TestBot::idle`], which returns once every
//! event sent is handled or dead-lettered. Tests of retries and time-outs run quickly under
//! `#[tokio::test(start_paused = true)]`.

mod events;
pub mod fake_api;
mod rate_window;
mod refusals;
mod rich_samples;
mod signed_webhook;

pub use events::{
    assert_delivered_alike, button_press_on, command_on, component_on, deleted_on, edited_on,
    followed_on, joined_on, postback_on, quick_reply_tap_on, text_on,
};
pub use rate_window::{RateWindow, RateWindowReport};
pub use refusals::{
    assert_refused_before_sending, assert_refused_to_start, assert_rules_refuse_as_the_client,
};
pub use rich_samples::{rich_sample, sample_card};
pub use signed_webhook::{SignedWebhook, check_known_signatures};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::bot::{Bot, BotBuilder};
use crate::error::{Error, ErrorKind};
use crate::event::{Command, ConversationId, Event, EventKind, Platform, Postback};
use crate::handler::{BoxHandler, Handler};
use crate::limits::Limits;
use crate::outbound::{Outbound, OutgoingMessage, Target};
use crate::queue::{DeadLetter, PushReport};
use crate::runtime::ShutdownReport;
use crate::state::StateStore;

/// Orders calls across recorders, so that a bot's sends on several platforms merge in call order.
static NEXT_CALL: AtomicU64 = AtomicU64::new(0);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a test thread must not hide what was recorded before it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits until `done` holds, re-checking each time `notify` wakes its waiters.
async fn wait_until<T>(notify: &Notify, mut done: impl FnMut() -> Option<T>) -> T {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so a wake-up between the check and the await is not lost.
        notified.as_mut().enable();
        if let Some(value) = done() {
            return value;
        }
        notified.await;
    }
}

/// One recorded [`Outbound::send`] call.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The platform of the outbound client that was called.
    pub platform: Platform,
    /// Where the messages went; `in_reply_to` is the event's id for replies.
    pub target: Target,
    /// The messages, in order.
    pub messages: Vec<OutgoingMessage>,
}

impl Sent {
    /// The texts of the messages, skipping messages without text.
    pub fn texts(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter_map(|m| m.text.as_deref())
            .collect()
    }
}

#[derive(Default)]
struct Recording {
    /// Successful sends with their global call number.
    sent: Vec<(u64, Sent)>,
    typing: Vec<ConversationId>,
    fail_next: usize,
    failures: usize,
}

/// An [`Outbound`] client that records every send instead of calling a platform.
///
/// Calls are recorded in order. [`RecordingOutbound::fail_next`] makes the next sends fail with
/// [`ErrorKind::Outbound`] (a retryable error), to test how handlers and retries cope.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use bot_core::testing::RecordingOutbound;
/// use bot_core::{Bot, Context, Error, Event, Platform};
///
/// async fn hello(cx: Context, _event: Event) -> Result<(), Error> {
///     cx.reply("hello").await
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let line = Arc::new(RecordingOutbound::new(Platform::LINE));
/// let bot = Bot::builder().handler(hello).outbound(line.clone()).build()?;
/// bot.start();
/// bot.ingress().submit(vec![Event::text(Platform::LINE, "U1", "hi")]).await?;
/// assert_eq!(line.wait_for(1).await[0].texts(), ["hello"]);
/// # bot.shutdown().await;
/// # Ok(()) }
/// ```
pub struct RecordingOutbound {
    platform: Platform,
    /// The platform's rules: what its client would refuse before sending.
    rules: Option<Validator>,
    recording: Mutex<Recording>,
    /// Woken on every recorded send; shared by the recorders of one [`TestBot`].
    notify: Arc<Notify>,
}

impl fmt::Debug for RecordingOutbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recording = lock(&self.recording);
        f.debug_struct("RecordingOutbound")
            .field("platform", &self.platform)
            .field("rules", &self.rules.is_some())
            .field("sent", &recording.sent.len())
            .field("fail_next", &recording.fail_next)
            .field("failures", &recording.failures)
            .finish()
    }
}

impl RecordingOutbound {
    /// A recorder for `platform`. Register it with [`crate::BotBuilder::outbound`] in an `Arc`
    /// and keep a clone to inspect.
    pub fn new(platform: Platform) -> Self {
        Self::with_notify(platform, Arc::new(Notify::new()))
    }

    /// A recorder for `platform` that refuses what `rules` refuses, with its error, as the
    /// platform's client would before sending (see [`TestBotBuilder::platform_rules`]).
    pub fn with_rules(platform: Platform, rules: Validator) -> Self {
        let mut recorder = Self::new(platform);
        recorder.rules = Some(rules);
        recorder
    }

    fn with_notify(platform: Platform, notify: Arc<Notify>) -> Self {
        Self {
            platform,
            rules: None,
            recording: Mutex::new(Recording::default()),
            notify,
        }
    }

    /// Every successful send so far, in call order.
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.recording)
            .sent
            .iter()
            .map(|(_, sent)| sent.clone())
            .collect()
    }

    /// The texts of every message sent so far, in order, skipping messages without text.
    pub fn texts(&self) -> Vec<String> {
        lock(&self.recording)
            .sent
            .iter()
            .flat_map(|(_, sent)| sent.texts())
            .map(str::to_owned)
            .collect()
    }

    /// How many successful sends were recorded.
    pub fn len(&self) -> usize {
        lock(&self.recording).sent.len()
    }

    /// Whether nothing was sent yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The conversations a typing indicator was shown in, in order.
    pub fn typing_indicators(&self) -> Vec<ConversationId> {
        lock(&self.recording).typing.clone()
    }

    /// Makes the next `count` sends fail with a retryable [`ErrorKind::Outbound`] error; they are
    /// not recorded as sent. Replaces any count still pending.
    pub fn fail_next(&self, count: usize) {
        lock(&self.recording).fail_next = count;
    }

    /// How many sends failed because of [`RecordingOutbound::fail_next`].
    pub fn failures(&self) -> usize {
        lock(&self.recording).failures
    }

    /// Forgets every recorded send and typing indicator (counts for
    /// [`RecordingOutbound::wait_for`] start again from zero).
    pub fn clear(&self) {
        let mut recording = lock(&self.recording);
        recording.sent.clear();
        recording.typing.clear();
    }

    /// Waits until at least `count` sends were recorded, then returns every send so far.
    ///
    /// Waits for as long as it takes: wrap it in [`tokio::time::timeout`] if the handler might not
    /// send.
    pub async fn wait_for(&self, count: usize) -> Vec<Sent> {
        wait_until(&self.notify, || {
            let recording = lock(&self.recording);
            (recording.sent.len() >= count)
                .then(|| recording.sent.iter().map(|(_, s)| s.clone()).collect())
        })
        .await
    }

    /// The sends with their global call numbers, for merging several recorders in call order.
    fn numbered(&self) -> Vec<(u64, Sent)> {
        lock(&self.recording).sent.clone()
    }
}

#[async_trait]
impl Outbound for RecordingOutbound {
    fn platform(&self) -> Platform {
        self.platform.clone()
    }

    async fn send(&self, target: &Target, messages: Vec<OutgoingMessage>) -> Result<(), Error> {
        if let Some(rules) = &self.rules {
            rules(&messages)?;
        }
        {
            let mut recording = lock(&self.recording);
            if recording.fail_next > 0 {
                recording.fail_next -= 1;
                recording.failures += 1;
                return Err(Error::new(
                    ErrorKind::Outbound,
                    format!("{} send failed (injected by the test)", self.platform),
                ));
            }
            let call = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
            recording.sent.push((
                call,
                Sent {
                    platform: self.platform.clone(),
                    target: target.clone(),
                    messages,
                },
            ));
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn typing(&self, conversation: &ConversationId) -> Result<(), Error> {
        lock(&self.recording).typing.push(conversation.clone());
        Ok(())
    }
}

type DeadLetterHook = Box<dyn Fn(&DeadLetter) + Send + Sync>;

/// A platform's rules for outgoing messages, as its adapter exports them
/// (`bot_line::client::validate`, `bot_messenger::client::validate`,
/// `bot_discord::client::validate`): `Err` with the error the platform's client would give.
pub type Validator = Arc<dyn Fn(&[OutgoingMessage]) -> Result<(), Error> + Send + Sync>;

/// Builds a [`TestBot`]; see [`TestBot::builder`].
#[must_use]
pub struct TestBotBuilder {
    bot: BotBuilder,
    handler: Option<BoxHandler>,
    platforms: Vec<Platform>,
    rules: Vec<(Platform, Validator)>,
    dead_letter_hook: Option<DeadLetterHook>,
}

impl fmt::Debug for TestBotBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestBotBuilder")
            .field("bot", &self.bot)
            .field("platforms", &self.platforms)
            .finish_non_exhaustive()
    }
}

impl TestBotBuilder {
    /// Sets the handler under test (usually a [`crate::Router`]).
    pub fn handler(mut self, handler: impl Handler) -> Self {
        self.handler = Some(BoxHandler::new(handler));
        self
    }

    /// Sets the limits, as [`crate::BotBuilder::limits`]. Default [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.bot = self.bot.limits(limits);
        self
    }

    /// Shares `value` with every handler as `cx.state::<T>()`, as [`crate::BotBuilder::state`].
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.bot = self.bot.state(value);
        self
    }

    /// Uses `store` for conversation state, as [`crate::BotBuilder::state_store`].
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.bot = self.bot.state_store(store);
        self
    }

    /// Calls `hook` with every dead letter, as [`crate::BotBuilder::on_dead_letter`].
    /// [`TestBot::dead_letters`] keeps them too.
    pub fn on_dead_letter(mut self, hook: impl Fn(&DeadLetter) + Send + Sync + 'static) -> Self {
        self.dead_letter_hook = Some(Box::new(hook));
        self
    }

    /// The platforms that get a [`RecordingOutbound`]. Default `[Platform::TEST]`.
    pub fn platforms(mut self, platforms: impl IntoIterator<Item = Platform>) -> Self {
        self.platforms.clear();
        for platform in platforms {
            if !self.platforms.contains(&platform) {
                self.platforms.push(platform);
            }
        }
        self
    }

    /// Plays `platform` by its rules: its recorder refuses a send that `rules` refuses, with
    /// that error, as the platform's client would before calling its API (the event is then
    /// dead-lettered, as in production). Adds `platform` to [`TestBotBuilder::platforms`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use bot_core::outbound::{Button, OutgoingMessage};
    /// use bot_core::testing::TestBot;
    /// use bot_core::{Error, ErrorKind, Platform};
    ///
    /// // What an adapter exports, here by hand: at most four buttons.
    /// fn four_buttons(messages: &[OutgoingMessage]) -> Result<(), Error> {
    ///     match messages.iter().any(|m| m.buttons.len() > 4) {
    ///         true => Err(Error::new(ErrorKind::Outbound, "at most 4 buttons").permanent()),
    ///         false => Ok(()),
    ///     }
    /// }
    /// let bot = TestBot::builder()
    ///     .platform_rules(Platform::LINE, four_buttons)
    ///     .handler(|cx: bot_core::Context, _e: bot_core::Event| async move {
    ///         let buttons = (0..5).map(|i| Button::postback(i.to_string(), "x"));
    ///         cx.reply(buttons.fold(OutgoingMessage::text("pick"), OutgoingMessage::button)).await
    ///     })
    ///     .build()
    ///     .unwrap();
    /// bot.send(bot_core::testing::text_on(Platform::LINE, "U1", "hi")).await.unwrap();
    /// bot.idle().await;
    /// assert_eq!(bot.dead_letters()[0].error, "at most 4 buttons");
    /// # bot.shutdown().await;
    /// # }
    /// ```
    pub fn platform_rules(
        mut self,
        platform: Platform,
        rules: impl Fn(&[OutgoingMessage]) -> Result<(), Error> + Send + Sync + 'static,
    ) -> Self {
        if !self.platforms.contains(&platform) {
            self.platforms.push(platform.clone());
        }
        self.rules.retain(|(p, _)| *p != platform);
        self.rules.push((platform, Arc::new(rules)));
        self
    }

    /// Builds the bot, registers a [`RecordingOutbound`] per platform and starts it.
    ///
    /// # Errors
    ///
    /// As [`crate::BotBuilder::build`]: [`ErrorKind::Config`] when no handler is set or the limits
    /// are invalid.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, since the bot starts its tasks at once.
    pub fn build(self) -> Result<TestBot, Error> {
        let dead_letters = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(Notify::new());
        let mut bot = self.bot;
        if let Some(handler) = self.handler {
            bot = bot.handler(handler);
        }
        let recorders: Vec<Arc<RecordingOutbound>> = self
            .platforms
            .into_iter()
            .map(|platform| {
                let mut recorder = RecordingOutbound::with_notify(platform, notify.clone());
                recorder.rules = (self.rules.iter())
                    .find(|(p, _)| *p == recorder.platform)
                    .map(|(_, rules)| rules.clone());
                Arc::new(recorder)
            })
            .collect();
        for recorder in &recorders {
            bot = bot.outbound(recorder.clone());
        }
        let user_hook = self.dead_letter_hook;
        let on_dead = dead_letters.clone();
        bot = bot.on_dead_letter(move |letter| {
            lock(&on_dead).push(letter.clone());
            if let Some(hook) = &user_hook {
                hook(letter);
            }
        });
        let bot = bot.build()?;
        bot.start();
        Ok(TestBot {
            bot,
            recorders,
            notify,
            dead_letters,
        })
    }
}

/// A started [`Bot`] whose platforms record what it sends; see the [module docs](self).
///
/// Events go through the real pipeline (queue, deduplication, per-conversation ordering,
/// supervisor, retries, time-outs), so tests see what production would do.
pub struct TestBot {
    bot: Bot,
    recorders: Vec<Arc<RecordingOutbound>>,
    /// Woken by every recorder of this bot.
    notify: Arc<Notify>,
    dead_letters: Arc<Mutex<Vec<DeadLetter>>>,
}

impl fmt::Debug for TestBot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestBot")
            .field("bot", &self.bot)
            .field("recorders", &self.recorders)
            .finish_non_exhaustive()
    }
}

impl TestBot {
    /// Starts building a test bot.
    pub fn builder() -> TestBotBuilder {
        TestBotBuilder {
            bot: Bot::builder(),
            handler: None,
            platforms: vec![Platform::TEST],
            rules: Vec::new(),
            dead_letter_hook: None,
        }
    }

    /// Submits `event` as an adapter would, through [`crate::Ingress::submit`].
    ///
    /// Returns once the event is queued, not handled: follow with [`TestBot::wait_for`] or
    /// [`TestBot::idle`].
    ///
    /// # Errors
    ///
    /// As [`crate::Ingress::submit`]: a full queue or a bot shutting down.
    pub async fn send(&self, event: Event) -> Result<PushReport, Error> {
        self.send_all(vec![event]).await
    }

    /// Submits `events` as one batch (one webhook request), all or nothing.
    ///
    /// # Errors
    ///
    /// As [`TestBot::send`].
    pub async fn send_all(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        self.bot.ingress().submit(events).await
    }

    /// The recorder of `platform`.
    ///
    /// # Panics
    ///
    /// When `platform` is not one of the builder's [`TestBotBuilder::platforms`].
    pub fn outbound(&self, platform: &Platform) -> Arc<RecordingOutbound> {
        self.recorders
            .iter()
            .find(|r| r.platform == *platform)
            .cloned()
            .unwrap_or_else(|| {
                panic!("no recording outbound for platform {platform}; add it with .platforms(..)")
            })
    }

    /// Every send on every platform, in call order.
    pub fn sent(&self) -> Vec<Sent> {
        let mut all: Vec<(u64, Sent)> = self.recorders.iter().flat_map(|r| r.numbered()).collect();
        all.sort_by_key(|(call, _)| *call);
        all.into_iter().map(|(_, sent)| sent).collect()
    }

    /// The texts of every message sent on every platform, in call order.
    pub fn texts(&self) -> Vec<String> {
        self.sent()
            .iter()
            .flat_map(Sent::texts)
            .map(str::to_owned)
            .collect()
    }

    /// Waits until at least `count` sends were recorded across all platforms, then returns every
    /// send so far in call order.
    ///
    /// Waits for as long as it takes: wrap it in [`tokio::time::timeout`] if the handler might not
    /// send.
    pub async fn wait_for(&self, count: usize) -> Vec<Sent> {
        wait_until(&self.notify, || {
            let recorded: usize = self.recorders.iter().map(|r| r.len()).sum();
            (recorded >= count).then(|| self.sent())
        })
        .await
    }

    /// Waits until every event accepted so far (through [`TestBot::send`], [`TestBot::send_all`] or
    /// the bot's ingress) is done: handled successfully, or dead-lettered after its last attempt.
    /// See [`Bot::idle`].
    pub async fn idle(&self) {
        self.bot.idle().await;
    }

    /// The events dead-lettered so far, in order.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.dead_letters).clone()
    }

    /// The bot under test.
    pub fn bot(&self) -> &Bot {
        &self.bot
    }

    /// Shuts the bot down gracefully, as [`Bot::shutdown`]: running handlers are drained, events
    /// still queued are not started (call [`TestBot::idle`] first to run everything).
    pub async fn shutdown(&self) -> ShutdownReport {
        self.bot.shutdown().await
    }
}

/// A text message on [`Platform::TEST`] in `conversation`, with a unique id, sent by the user
/// whose id is the conversation's (as in a one-to-one chat).
pub fn text(conversation: impl Into<ConversationId>, text: impl Into<String>) -> Event {
    let conversation = conversation.into();
    Event::text(Platform::TEST, conversation.clone(), text).with_sender(conversation.as_str())
}

/// A command event (as a Discord slash command arrives) named `name`, without options, on
/// [`Platform::TEST`]; like [`text`] otherwise.
pub fn command(conversation: impl Into<ConversationId>, name: impl Into<String>) -> Event {
    let conversation = conversation.into();
    let kind = EventKind::Command(Command {
        name: name.into(),
        options: serde_json::Map::new(),
    });
    Event::new(Platform::TEST, conversation.clone(), kind).with_sender(conversation.as_str())
}

/// A postback carrying `data`, without parameters, on [`Platform::TEST`]; like [`text`]
/// otherwise.
pub fn postback(conversation: impl Into<ConversationId>, data: impl Into<String>) -> Event {
    let conversation = conversation.into();
    let kind = EventKind::Postback(Postback {
        data: data.into(),
        params: serde_json::Value::Null,
    });
    Event::new(Platform::TEST, conversation.clone(), kind).with_sender(conversation.as_str())
}

#[cfg(test)]
mod tests;
