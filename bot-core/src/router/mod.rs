//! [`Router`]: one handler that sends each event to the first route that matches it.
//!
//! Routes match on a command name, message text (any, exact, prefix, regex; compared as
//! [`TextMatch`] says), postback data, the event kind, the platform, or any predicate. They are tried in the order they were added; the
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
use crate::dialog::DialogPosition;
use crate::error::BoxError;
use crate::event::{Event, EventKind, Platform};
use crate::handler::{BoxHandler, Handler};

mod text;

use text::Pattern;
pub use text::TextMatch;

type Predicate = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// What one route matches.
#[derive(Clone)]
enum Matcher {
    /// A command event with this name, or a text message starting with `/name`.
    Command(String),
    /// Any message with text.
    Text,
    /// A message whose text is this, compared by the router's [`TextMatch`].
    TextExact(Pattern),
    /// A message whose text starts with this, compared by the router's [`TextMatch`].
    TextPrefix(Pattern),
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
    /// While the conversation is in this dialog (at this step, if named), what these routes
    /// match.
    InDialog {
        dialog: String,
        step: Option<String>,
        routes: Box<Router>,
    },
}

impl Matcher {
    fn matches(
        &self,
        event: &Event,
        options: TextMatch,
        position: Option<&DialogPosition>,
    ) -> bool {
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
            Matcher::TextExact(expected) => event
                .text_content()
                .is_some_and(|text| options.fold(text) == expected.folded),
            Matcher::TextPrefix(prefix) => event
                .text_content()
                .is_some_and(|text| options.fold(text).starts_with(prefix.folded.as_str())),
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
            Matcher::InDialog {
                dialog,
                step,
                routes,
            } => {
                position.is_some_and(|at| {
                    at.dialog() == dialog && step.as_ref().is_none_or(|step| step == at.step())
                }) && routes.route_for(event, position).is_some()
            }
        }
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Command(name) => f.debug_tuple("Command").field(name).finish(),
            Matcher::Text => f.write_str("Text"),
            Matcher::TextExact(text) => f.debug_tuple("TextExact").field(&text.given).finish(),
            Matcher::TextPrefix(prefix) => {
                f.debug_tuple("TextPrefix").field(&prefix.given).finish()
            }
            Matcher::TextRegex(regex) => f.debug_tuple("TextRegex").field(&regex.as_str()).finish(),
            Matcher::Postback(data) => f.debug_tuple("Postback").field(data).finish(),
            Matcher::PostbackPrefix(prefix) => {
                f.debug_tuple("PostbackPrefix").field(prefix).finish()
            }
            Matcher::Kind(name) => f.debug_tuple("Kind").field(name).finish(),
            Matcher::Platform(platform) => f.debug_tuple("Platform").field(platform).finish(),
            Matcher::Predicate(_) => f.write_str("Predicate(..)"),
            Matcher::InDialog {
                dialog,
                step,
                routes,
            } => f
                .debug_struct("InDialog")
                .field("dialog", dialog)
                .field("step", step)
                .field("routes", routes)
                .finish(),
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
    text_match: TextMatch,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self.routes.iter().map(|(m, _)| m).collect::<Vec<_>>(),
            )
            .field("fallback", &self.fallback.is_some())
            .field("text_match", &self.text_match)
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

    /// Routes messages whose text is `text`: exactly, or as the router's [`Router::text_match`]
    /// says (case-insensitive, trimmed, Unicode-normalised).
    pub fn text_exact(self, text: impl Into<String>, handler: impl Handler) -> Self {
        let pattern = Pattern::new(text.into(), self.text_match);
        self.push(Matcher::TextExact(pattern), handler)
    }

    /// Routes messages whose text starts with `prefix`, compared as [`Router::text_exact`] does.
    pub fn text_prefix(self, prefix: impl Into<String>, handler: impl Handler) -> Self {
        let pattern = Pattern::new(prefix.into(), self.text_match);
        self.push(Matcher::TextPrefix(pattern), handler)
    }

    /// How this router's [`Router::text_exact`] and [`Router::text_prefix`] routes compare text,
    /// all of them, added before or after; default [`TextMatch::EXACT`]. Phone keyboards
    /// capitalise the first letter and some add a space after a word: [`TextMatch::LENIENT`]
    /// takes `"Book "` for `"book"`.
    ///
    /// A nested router has its own. Regex routes are not changed: write `(?i)` in the pattern.
    ///
    /// ```
    /// use bot_core::router::TextMatch;
    /// use bot_core::{Context, Error, Event, Router};
    ///
    /// async fn book(_cx: Context, _event: Event) -> Result<(), Error> { Ok(()) }
    /// let router = Router::new()
    ///     .text_match(TextMatch::LENIENT)
    ///     .text_exact("book", book);
    /// # drop(router);
    /// ```
    pub fn text_match(mut self, options: TextMatch) -> Self {
        self.text_match = options;
        for (matcher, handler) in &mut self.routes {
            match matcher {
                Matcher::TextExact(pattern) | Matcher::TextPrefix(pattern) => {
                    pattern.refold(options);
                }
                Matcher::InDialog { routes, .. } => {
                    let refolded = std::mem::take(&mut **routes).text_match(options);
                    *handler = BoxHandler::new(refolded.clone());
                    **routes = refolded;
                }
                _ => {}
            }
        }
        self
    }

    /// Routes messages whose text `regex` matches (anywhere in the text, unless the pattern is
    /// anchored with `^` and `$`).
    ///
    /// The regex is compiled by the caller, so a bad pattern fails where the router is built.
    /// The `regex` crate is re-exported as [`crate::regex`]: no dependency of your own needed.
    ///
    /// ```
    /// use bot_core::{Context, Error, Event, Router};
    ///
    /// async fn order(_cx: Context, _event: Event) -> Result<(), Error> { Ok(()) }
    /// let router = Router::new().text_regex(bot_core::regex::Regex::new(r"^order #\d+$").unwrap(), order);
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

    /// Routes what `routes` match while the conversation is in the dialog named `dialog`, at
    /// any step ([`crate::dialog`]): "status" during a booking, say. Such routes come before
    /// the dialog's own reading of an answer; outside the dialog they match nothing. They
    /// compare text as this router does ([`Router::text_match`]).
    ///
    /// Only this router's own dialog routes are seen by [`crate::dialog::Dialogs`], not those
    /// of routers nested in its other routes.
    ///
    /// ```
    /// use bot_core::{Context, Error, Event, Router};
    ///
    /// async fn status(_cx: Context, _event: Event) -> Result<(), Error> { Ok(()) }
    /// let router = Router::new()
    ///     .in_dialog("booking", Router::new().text_exact("status", status));
    /// # drop(router);
    /// ```
    pub fn in_dialog(self, dialog: impl Into<String>, routes: Router) -> Self {
        self.push_in_dialog(dialog.into(), None, routes)
    }

    /// As [`Router::in_dialog`], at one step of the dialog only.
    pub fn in_step(
        self,
        dialog: impl Into<String>,
        step: impl Into<String>,
        routes: Router,
    ) -> Self {
        self.push_in_dialog(dialog.into(), Some(step.into()), routes)
    }

    fn push_in_dialog(self, dialog: String, step: Option<String>, routes: Router) -> Self {
        // They read the same messages as this router's routes: they compare text as it does.
        let routes = routes.text_match(self.text_match);
        let handler = routes.clone();
        let matcher = Matcher::InDialog {
            dialog,
            step,
            routes: Box::new(routes),
        };
        self.push(matcher, handler)
    }

    /// Sets the handler of events no route matches, replacing any earlier fallback.
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(BoxHandler::new(handler));
        self
    }

    /// The handler of the first route matching `event`, the fallback aside.
    fn route_for<'a>(
        &'a self,
        event: &Event,
        position: Option<&DialogPosition>,
    ) -> Option<&'a BoxHandler> {
        self.routes
            .iter()
            .find(|(matcher, _)| matcher.matches(event, self.text_match, position))
            .map(|(_, handler)| handler)
    }

    /// The handler `event` goes to: the first matching route's, else the fallback.
    fn handler_for<'a>(
        &'a self,
        event: &Event,
        position: Option<&DialogPosition>,
    ) -> Option<&'a BoxHandler> {
        self.route_for(event, position).or(self.fallback.as_ref())
    }

    /// Whether a route made with [`Router::in_dialog`] or [`Router::in_step`] matches `event`.
    pub(crate) fn has_dialog_route(
        &self,
        event: &Event,
        position: Option<&DialogPosition>,
    ) -> bool {
        (self.routes.iter()).any(|(matcher, _)| {
            matches!(matcher, Matcher::InDialog { .. })
                && matcher.matches(event, self.text_match, position)
        })
    }
}

#[async_trait]
impl Handler for Router {
    async fn call(&self, cx: Context, event: Event) -> Result<(), BoxError> {
        match self.handler_for(&event, cx.dialog()) {
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
        self.handler_for(event, None)?.timeout(event)
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
mod tests;
