//! [`Router`]: one handler that sends each event to the first route that matches it.
//!
//! Routes match on a command name, message text (any, exact, prefix, regex), postback data, the
//! event kind, the platform, or any predicate. They are tried in the order they were added; the
//! first match wins, and the [`Router::fallback`] runs when none matched.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use bot_core::{Context, Error, Event, HandlerExt, Platform, Router};
//!
//! async fn ping(cx: Context, _event: Event) -> Result<(), Error> {
//!     cx.reply("pong").await
//! }
//!
//! async fn report(cx: Context, _event: Event) -> Result<(), Error> {
//!     cx.reply("a long report").await
//! }
//!
//! async fn echo(cx: Context, event: Event) -> Result<(), Error> {
//!     cx.reply(event.text_content().unwrap_or_default()).await
//! }
//!
//! async fn ignore(_cx: Context, _event: Event) -> Result<(), Error> {
//!     Ok(())
//! }
//!
//! let router = Router::new()
//!     // A Discord slash command, or a message starting with `/ping` or `/ping@my_bot`.
//!     .command("ping", ping)
//!     // This route gets ten minutes instead of the runtime's default time-out.
//!     .command("report", report.with_timeout(Duration::from_secs(600)))
//!     .postback_prefix("vote:", ignore)
//!     .kind("followed", ignore)
//!     .text(echo)
//!     .fallback(ignore);
//! # fn assert_handler<H: bot_core::Handler>(_: H) {}
//! # assert_handler(router);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use regex::Regex;

use crate::context::Context;
use crate::error::BoxError;
use crate::event::{Event, EventKind, Platform};
use crate::handler::{BoxHandler, Handler};

type Predicate = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// What one route matches.
#[derive(Clone)]
enum Matcher {
    /// A command event with this name, or a text message starting with `/name`.
    Command(String),
    /// Any message with text.
    Text,
    /// A message whose text is exactly this.
    TextExact(String),
    /// A message whose text starts with this.
    TextPrefix(String),
    /// A message whose text the regex matches.
    TextRegex(Regex),
    /// A postback whose data is exactly this.
    Postback(String),
    /// A postback whose data starts with this.
    PostbackPrefix(String),
    /// An event whose kind has this name.
    Kind(String),
    /// Any event of this platform.
    Platform(Platform),
    /// Any event the predicate accepts.
    Predicate(Predicate),
}

impl Matcher {
    fn matches(&self, event: &Event) -> bool {
        match self {
            Matcher::Command(name) => match &event.kind {
                EventKind::Command(command) => command.name == *name,
                EventKind::Message(message) => message
                    .text
                    .as_deref()
                    .and_then(parse_command)
                    .is_some_and(|(command, _)| command == name),
                _ => false,
            },
            Matcher::Text => event.text_content().is_some(),
            Matcher::TextExact(expected) => event.text_content() == Some(expected.as_str()),
            Matcher::TextPrefix(prefix) => event
                .text_content()
                .is_some_and(|text| text.starts_with(prefix.as_str())),
            Matcher::TextRegex(regex) => event.text_content().is_some_and(|t| regex.is_match(t)),
            Matcher::Postback(expected) => {
                matches!(&event.kind, EventKind::Postback(p) if p.data == *expected)
            }
            Matcher::PostbackPrefix(prefix) => {
                matches!(&event.kind, EventKind::Postback(p) if p.data.starts_with(prefix.as_str()))
            }
            Matcher::Kind(name) => event.kind.name() == name,
            Matcher::Platform(platform) => event.platform == *platform,
            Matcher::Predicate(predicate) => predicate(event),
        }
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Command(name) => f.debug_tuple("Command").field(name).finish(),
            Matcher::Text => f.write_str("Text"),
            Matcher::TextExact(text) => f.debug_tuple("TextExact").field(text).finish(),
            Matcher::TextPrefix(prefix) => f.debug_tuple("TextPrefix").field(prefix).finish(),
            Matcher::TextRegex(regex) => f.debug_tuple("TextRegex").field(&regex.as_str()).finish(),
            Matcher::Postback(data) => f.debug_tuple("Postback").field(data).finish(),
            Matcher::PostbackPrefix(prefix) => {
                f.debug_tuple("PostbackPrefix").field(prefix).finish()
            }
            Matcher::Kind(name) => f.debug_tuple("Kind").field(name).finish(),
            Matcher::Platform(platform) => f.debug_tuple("Platform").field(platform).finish(),
            Matcher::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// A [`Handler`] that dispatches each event to the first matching route, in the order the routes
/// were added.
///
/// An event no route matches goes to the [`Router::fallback`] handler; without one it is done
/// (`Ok`) and logged at debug level. A route's handler keeps its own time-out
/// ([`crate::HandlerExt::with_timeout`]): the runtime asks the router, which answers for the route
/// the event matches.
///
/// Routers nest: a `Router` is a handler, so it can serve as the handler of another router's route.
/// Cloning is cheap (the handlers are shared).
///
/// See the [module documentation](self) for an example.
#[derive(Clone, Default)]
#[must_use]
pub struct Router {
    routes: Vec<(Matcher, BoxHandler)>,
    fallback: Option<BoxHandler>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self.routes.iter().map(|(m, _)| m).collect::<Vec<_>>(),
            )
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Router {
    /// A router with no routes: every event goes to the fallback, if any.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, matcher: Matcher, handler: impl Handler) -> Self {
        self.routes.push((matcher, BoxHandler::new(handler)));
        self
    }

    /// Routes a command named `name` (a leading `/` is ignored): a [`EventKind::Command`] event
    /// (Discord slash commands, interactions) whose name is `name`, or a text message whose first
    /// word is `/name` or `/name@bot_name` (Telegram-style text commands).
    ///
    /// Names are compared exactly, case included. Use [`parse_command`] in the handler to get the
    /// arguments of a text command.
    pub fn command(self, name: impl Into<String>, handler: impl Handler) -> Self {
        let name = name.into();
        let name = match name.strip_prefix('/') {
            Some(stripped) => stripped.to_owned(),
            None => name,
        };
        self.push(Matcher::Command(name), handler)
    }

    /// Routes every message that has text.
    pub fn text(self, handler: impl Handler) -> Self {
        self.push(Matcher::Text, handler)
    }

    /// Routes messages whose text is exactly `text`.
    pub fn text_exact(self, text: impl Into<String>, handler: impl Handler) -> Self {
        self.push(Matcher::TextExact(text.into()), handler)
    }

    /// Routes messages whose text starts with `prefix`.
    pub fn text_prefix(self, prefix: impl Into<String>, handler: impl Handler) -> Self {
        self.push(Matcher::TextPrefix(prefix.into()), handler)
    }

    /// Routes messages whose text `regex` matches (anywhere in the text, unless the pattern is
    /// anchored with `^` and `$`).
    ///
    /// The regex is compiled by the caller, so a bad pattern fails where the router is built.
    ///
    /// ```
    /// use bot_core::{Context, Error, Event, Router};
    ///
    /// async fn order(_cx: Context, _event: Event) -> Result<(), Error> { Ok(()) }
    /// let router = Router::new().text_regex(regex::Regex::new(r"^order #\d+$").unwrap(), order);
    /// # drop(router);
    /// ```
    pub fn text_regex(self, regex: Regex, handler: impl Handler) -> Self {
        self.push(Matcher::TextRegex(regex), handler)
    }

    /// Routes postbacks whose data is exactly `data`.
    pub fn postback(self, data: impl Into<String>, handler: impl Handler) -> Self {
        self.push(Matcher::Postback(data.into()), handler)
    }

    /// Routes postbacks whose data starts with `prefix`.
    pub fn postback_prefix(self, prefix: impl Into<String>, handler: impl Handler) -> Self {
        self.push(Matcher::PostbackPrefix(prefix.into()), handler)
    }

    /// Routes events whose [`EventKind::name`] is `name`: `"followed"`, `"member_joined"`,
    /// `"reaction"`, or a platform's own name for an [`EventKind::Other`] event such as `"beacon"`.
    pub fn kind(self, name: impl Into<String>, handler: impl Handler) -> Self {
        self.push(Matcher::Kind(name.into()), handler)
    }

    /// Routes every event of `platform`.
    pub fn platform(self, platform: Platform, handler: impl Handler) -> Self {
        self.push(Matcher::Platform(platform), handler)
    }

    /// Routes every event `predicate` accepts.
    ///
    /// ```
    /// use bot_core::{Context, Error, Event, Router};
    ///
    /// async fn vip(_cx: Context, _event: Event) -> Result<(), Error> { Ok(()) }
    /// let router = Router::new().route(
    ///     |event: &Event| event.sender.as_ref().is_some_and(|s| s.as_str() == "U42"),
    ///     vip,
    /// );
    /// # drop(router);
    /// ```
    pub fn route(
        self,
        predicate: impl Fn(&Event) -> bool + Send + Sync + 'static,
        handler: impl Handler,
    ) -> Self {
        self.push(Matcher::Predicate(Arc::new(predicate)), handler)
    }

    /// Sets the handler of events no route matches, replacing any earlier fallback.
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(BoxHandler::new(handler));
        self
    }

    /// The handler `event` goes to: the first matching route's, else the fallback.
    fn handler_for(&self, event: &Event) -> Option<&BoxHandler> {
        self.routes
            .iter()
            .find(|(matcher, _)| matcher.matches(event))
            .map(|(_, handler)| handler)
            .or(self.fallback.as_ref())
    }
}

#[async_trait]
impl Handler for Router {
    async fn call(&self, cx: Context, event: Event) -> Result<(), BoxError> {
        match self.handler_for(&event) {
            Some(handler) => handler.call(cx, event).await,
            None => {
                tracing::debug!(
                    platform = %event.platform,
                    event_id = %event.id,
                    kind = event.kind.name(),
                    "no route matched the event and the router has no fallback"
                );
                Ok(())
            }
        }
    }

    fn timeout(&self, event: &Event) -> Option<Duration> {
        self.handler_for(event)?.timeout(event)
    }
}

/// Splits a Telegram-style text command into its name and arguments.
///
/// The text's first word (leading whitespace is skipped) must be `/name` or `/name@bot_name`,
/// where `name` is made of letters, digits, `_` and `-`. Returns the name without `/` or the
/// `@bot_name` suffix, and the rest of the text with surrounding whitespace trimmed.
///
/// ```
/// use bot_core::router::parse_command;
///
/// assert_eq!(parse_command("/start"), Some(("start", "")));
/// assert_eq!(parse_command("/weather@my_bot  Tokyo tomorrow "), Some(("weather", "Tokyo tomorrow")));
/// assert_eq!(parse_command("hello /start"), None);
/// assert_eq!(parse_command("/usr/bin/env"), None);
/// ```
pub fn parse_command(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let body = text.strip_prefix('/')?;
    let word_end = body.find(char::is_whitespace).unwrap_or(body.len());
    let (word, rest) = body.split_at(word_end);
    let name = match word.split_once('@') {
        Some((name, bot_name)) if !bot_name.is_empty() => name,
        Some(_) => return None,
        None => word,
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    valid.then(|| (name, rest.trim()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::context::Shared;
    use crate::error::Error;
    use crate::event::{Command, Members, Other, Postback};
    use crate::handler::HandlerExt;
    use crate::state::MemoryStateStore;

    type Log = Arc<Mutex<Vec<&'static str>>>;

    /// A handler that records `name` when it runs.
    fn mark(log: &Log, name: &'static str) -> impl Handler + use<> {
        let log = log.clone();
        move |_cx: Context, _event: Event| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(name);
                Ok::<(), Error>(())
            }
        }
    }

    fn context(event: &Event) -> Context {
        let shared = Arc::new(Shared {
            outbounds: Default::default(),
            app_state: Default::default(),
            clients: Default::default(),
            state_store: Arc::new(MemoryStateStore::new()),
            #[cfg(feature = "postgres")]
            db: None,
        });
        Context::new(shared, event, 1, CancellationToken::new())
    }

    /// Runs `event` through `router` and returns the routes that ran.
    async fn dispatch(router: &Router, log: &Log, event: Event) -> Vec<&'static str> {
        log.lock().unwrap().clear();
        router.call(context(&event), event).await.unwrap();
        std::mem::take(&mut *log.lock().unwrap())
    }

    fn text(text: &str) -> Event {
        Event::text(Platform::TEST, "c", text)
    }

    fn command(name: &str) -> Event {
        Event::new(
            Platform::DISCORD,
            "c",
            EventKind::Command(Command {
                name: name.into(),
                options: Default::default(),
            }),
        )
    }

    fn postback(data: &str) -> Event {
        Event::new(
            Platform::LINE,
            "c",
            EventKind::Postback(Postback {
                data: data.into(),
                params: serde_json::Value::Null,
            }),
        )
    }

    fn other(name: &str) -> Event {
        Event::new(
            Platform::LINE,
            "c",
            EventKind::Other(Other { name: name.into() }),
        )
    }

    #[tokio::test]
    async fn first_matching_route_wins_in_insertion_order() {
        let log = Log::default();
        let router = Router::new()
            .text_exact("hi", mark(&log, "exact"))
            .text_prefix("h", mark(&log, "prefix"))
            .text(mark(&log, "any"));
        assert_eq!(dispatch(&router, &log, text("hi")).await, ["exact"]);
        assert_eq!(dispatch(&router, &log, text("hello")).await, ["prefix"]);
        assert_eq!(dispatch(&router, &log, text("yo")).await, ["any"]);

        let reversed = Router::new()
            .text(mark(&log, "any"))
            .text_exact("hi", mark(&log, "exact"));
        assert_eq!(dispatch(&reversed, &log, text("hi")).await, ["any"]);
    }

    #[tokio::test]
    async fn command_matches_command_events_and_slash_text() {
        let log = Log::default();
        let router = Router::new()
            .command("start", mark(&log, "start"))
            .command("/help", mark(&log, "help"))
            .text(mark(&log, "text"));
        assert_eq!(dispatch(&router, &log, command("start")).await, ["start"]);
        assert_eq!(dispatch(&router, &log, command("help")).await, ["help"]);
        assert_eq!(dispatch(&router, &log, text("/start")).await, ["start"]);
        assert_eq!(
            dispatch(&router, &log, text("  /start@my_bot now")).await,
            ["start"]
        );
        assert_eq!(dispatch(&router, &log, text("/help me")).await, ["help"]);
        // Not the same command, not a command at all, or not at the start.
        assert_eq!(dispatch(&router, &log, text("/starts")).await, ["text"]);
        assert_eq!(dispatch(&router, &log, text("/Start")).await, ["text"]);
        assert_eq!(dispatch(&router, &log, text("start")).await, ["text"]);
        assert_eq!(dispatch(&router, &log, text("say /start")).await, ["text"]);
        // A command event that no route names does not fall into the text route.
        assert!(dispatch(&router, &log, command("other")).await.is_empty());
    }

    #[test]
    fn parse_command_splits_name_and_arguments() {
        assert_eq!(parse_command("/start"), Some(("start", "")));
        assert_eq!(parse_command("/start   "), Some(("start", "")));
        assert_eq!(parse_command("\t/start a  b "), Some(("start", "a  b")));
        assert_eq!(parse_command("/start@bot a\nb"), Some(("start", "a\nb")));
        assert_eq!(parse_command("/set_name-2 x"), Some(("set_name-2", "x")));
        assert_eq!(parse_command("/日本 x"), Some(("日本", "x")));
        assert_eq!(parse_command("/"), None);
        assert_eq!(parse_command("/ start"), None);
        assert_eq!(parse_command("/@bot"), None);
        assert_eq!(parse_command("/start@"), None);
        assert_eq!(parse_command("/a/b"), None);
        assert_eq!(parse_command("start"), None);
        assert_eq!(parse_command(""), None);
    }

    #[tokio::test]
    async fn regex_matches_text_only() {
        let log = Log::default();
        let router = Router::new()
            .text_regex(Regex::new(r"^order #\d+$").unwrap(), mark(&log, "order"))
            .fallback(mark(&log, "fallback"));
        assert_eq!(dispatch(&router, &log, text("order #42")).await, ["order"]);
        assert_eq!(
            dispatch(&router, &log, text("order #42!")).await,
            ["fallback"]
        );
        assert_eq!(
            dispatch(&router, &log, postback("order #42")).await,
            ["fallback"]
        );
    }

    #[tokio::test]
    async fn postback_exact_and_prefix() {
        let log = Log::default();
        let router = Router::new()
            .postback("menu", mark(&log, "menu"))
            .postback_prefix("vote:", mark(&log, "vote"))
            .text(mark(&log, "text"));
        assert_eq!(dispatch(&router, &log, postback("menu")).await, ["menu"]);
        assert_eq!(dispatch(&router, &log, postback("vote:3")).await, ["vote"]);
        assert!(dispatch(&router, &log, postback("menu2")).await.is_empty());
        // Text that looks like postback data is still text.
        assert_eq!(dispatch(&router, &log, text("menu")).await, ["text"]);
    }

    #[tokio::test]
    async fn kind_matches_kind_names_and_other_names() {
        let log = Log::default();
        let router = Router::new()
            .kind("followed", mark(&log, "followed"))
            .kind("member_joined", mark(&log, "joined"))
            .kind("beacon", mark(&log, "beacon"));
        let followed = Event::new(Platform::LINE, "c", EventKind::Followed);
        let joined = Event::new(
            Platform::LINE,
            "c",
            EventKind::MemberJoined(Members::default()),
        );
        assert_eq!(dispatch(&router, &log, followed).await, ["followed"]);
        assert_eq!(dispatch(&router, &log, joined).await, ["joined"]);
        assert_eq!(dispatch(&router, &log, other("beacon")).await, ["beacon"]);
        assert!(dispatch(&router, &log, other("things")).await.is_empty());
        assert!(dispatch(&router, &log, text("followed")).await.is_empty());
    }

    #[tokio::test]
    async fn platform_and_predicate_routes() {
        let log = Log::default();
        let router = Router::new()
            .platform(Platform::LINE, mark(&log, "line"))
            .route(
                |e: &Event| e.conversation.as_str() == "vip",
                mark(&log, "vip"),
            );
        assert_eq!(dispatch(&router, &log, postback("x")).await, ["line"]);
        assert_eq!(dispatch(&router, &log, other("beacon")).await, ["line"]);
        assert!(dispatch(&router, &log, text("x")).await.is_empty());
        let vip = Event::text(Platform::DISCORD, "vip", "x");
        assert_eq!(dispatch(&router, &log, vip).await, ["vip"]);
    }

    #[tokio::test]
    async fn fallback_runs_only_when_nothing_matched() {
        let log = Log::default();
        let router = Router::new()
            .text_exact("a", mark(&log, "a"))
            .fallback(mark(&log, "first"))
            .fallback(mark(&log, "fallback"));
        assert_eq!(dispatch(&router, &log, text("a")).await, ["a"]);
        assert_eq!(dispatch(&router, &log, text("b")).await, ["fallback"]);
        assert_eq!(dispatch(&router, &log, command("x")).await, ["fallback"]);

        let without = Router::new().text_exact("a", mark(&log, "a"));
        assert!(dispatch(&without, &log, text("b")).await.is_empty());
    }

    #[tokio::test]
    async fn route_errors_reach_the_caller() {
        async fn failing(_cx: Context, _event: Event) -> Result<(), Error> {
            Err(Error::new(crate::ErrorKind::Other, "boom"))
        }
        let router = Router::new().text(failing);
        let event = text("x");
        let err = router.call(context(&event), event).await.unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }

    #[tokio::test]
    async fn nested_routers_dispatch_within() {
        let log = Log::default();
        let line = Router::new()
            .text(mark(&log, "line text"))
            .fallback(mark(&log, "line other"));
        let router = Router::new()
            .platform(Platform::LINE, line)
            .text(mark(&log, "text"));
        let line_text = Event::text(Platform::LINE, "c", "x");
        assert_eq!(dispatch(&router, &log, line_text).await, ["line text"]);
        assert_eq!(dispatch(&router, &log, postback("x")).await, ["line other"]);
        assert_eq!(dispatch(&router, &log, text("x")).await, ["text"]);
    }

    #[test]
    fn timeout_is_the_matched_routes() {
        let log = Log::default();
        let router = Router::new()
            .command(
                "report",
                mark(&log, "report").with_timeout(Duration::from_secs(600)),
            )
            .text(mark(&log, "text"))
            .fallback(mark(&log, "fallback").with_timeout(Duration::from_secs(2)));
        assert_eq!(
            router.timeout(&text("/report now")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            router.timeout(&command("report")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(router.timeout(&text("hello")), None);
        assert_eq!(router.timeout(&postback("x")), Some(Duration::from_secs(2)));
        let without = Router::new().text(mark(&log, "text"));
        assert_eq!(without.timeout(&postback("x")), None);
    }

    #[test]
    fn debug_lists_the_routes() {
        let log = Log::default();
        let router = Router::new()
            .command("start", mark(&log, "x"))
            .text_regex(Regex::new("a+").unwrap(), mark(&log, "x"))
            .route(|_: &Event| true, mark(&log, "x"));
        let debug = format!("{router:?}");
        assert!(debug.contains(r#"Command("start")"#), "{debug}");
        assert!(debug.contains(r#"TextRegex("a+")"#), "{debug}");
        assert!(debug.contains("Predicate(..)"), "{debug}");
    }

    #[test]
    fn router_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Router>();
    }
}
