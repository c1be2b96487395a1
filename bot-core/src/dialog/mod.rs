//! Dialogs: multi-step conversations with typed state, that own a conversation until they end.
//!
//! A [`Dialog`] is a list of [`Step`]s over a state type of yours. A route starts it
//! ([`begin`], or [`Context::begin_dialog`]); from then on [`Dialogs`], the handler that wraps
//! your [`Router`], sends the conversation's messages and taps to the step that is asking,
//! until the dialog is done, cancelled or timed out:
//!
//! - each step asks with quick replies or buttons and takes an answer by a tap or by typed
//!   text, through one [`Step::accept`] function; a refused answer ([`Retry`]) says why and asks
//!   again;
//! - "cancel" and "help" work at any step ([`Dialogs::cancel_words`], [`Dialogs::help_words`]);
//! - a dialog left open ends after its [`Dialog::timeout`]; the user's next message is answered
//!   with [`Dialog::timed_out_text`] (alone: LINE gives one reply per message), and the one
//!   after goes to the router as usual;
//! - a tap on a question already answered gets [`Dialogs::stale_text`] and the current question
//!   again (every tap names the question it answers);
//! - a step can begin another dialog ([`Next::Begin`]), which runs nested and hands back;
//! - routes can match on where a conversation stands ([`Router::in_dialog`],
//!   [`Router::in_step`]): "status" at any step of a booking, say.
//!
//! Where a conversation stands is one document in the bot's [`crate::StateStore`] (under a
//! [`crate::state::StateKey::Dialog`] key: per conversation, or per user in it with
//! [`Dialogs::per_user`]), written with compare-and-swap: two processes on one durable queue
//! cannot both apply an answer to the same question. A write that loses is an error the runtime
//! retries, and an event retried after its write succeeded repeats what it said instead of
//! answering twice. Replies and `on_done` run after the write, so they are at least once, as
//! every handler is.
//!
//! # Examples
//!
//! ```
//! use bot_core::dialog::{self, Dialog, Dialogs, Next, Retry, Step};
//! use bot_core::{Context, Error, Router};
//!
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! struct Order { size: String }
//!
//! let order = Dialog::<Order>::new("order")
//!     .step(
//!         Step::new("size", |_: &Order| "Which size?".into())
//!             .choices(["S", "M", "L"])
//!             .accept(|order, answer| {
//!                 order.size = answer.choice().ok_or(Retry::new("S, M or L?"))?.to_owned();
//!                 Ok(Next::Done)
//!             }),
//!     )
//!     .on_done(|cx: Context, order: Order| async move {
//!         cx.reply(format!("One {} coming", order.size)).await
//!     });
//! let handler = Dialogs::new(Router::new().text_exact("order", dialog::begin("order")))
//!     .dialog(order);
//! # fn assert_handler<H: bot_core::Handler>(_: H) {}
//! # assert_handler(handler);
//! ```

pub(crate) mod engine;
mod record;
mod step;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::context::Context;
use crate::error::{BoxError, Error, ErrorKind};
use crate::event::Event;

pub use engine::Dialogs;
pub use step::{Answer, Choice, Next, Retry, Step};

#[cfg(doc)]
use crate::router::Router;

/// How long a dialog waits for an answer before it ends, unless told otherwise.
pub const DEFAULT_DIALOG_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What starts the data of a dialog's taps: `dlg:<question number>:<value>`.
pub const DIALOG_POSTBACK_PREFIX: &str = "dlg:";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type DoneFn<S> = Arc<dyn Fn(Context, S) -> BoxFuture<Result<(), BoxError>> + Send + Sync>;

/// A dialog: named steps over a state of type `S`, which starts as `S::default()` and is stored
/// as JSON between messages.
pub struct Dialog<S> {
    name: String,
    steps: Vec<Step<S>>,
    on_done: Option<DoneFn<S>>,
    timeout: Duration,
    cancelled: String,
    timed_out: String,
}

impl<S> fmt::Debug for Dialog<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialog")
            .field("name", &self.name)
            .field("steps", &self.steps)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<S> Dialog<S>
where
    S: Serialize + DeserializeOwned + Default + Send + Sync + 'static,
{
    /// A dialog named `name` (routes and [`begin`] name it) with no steps yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            steps: Vec::new(),
            on_done: None,
            timeout: DEFAULT_DIALOG_TIMEOUT,
            cancelled: "Cancelled.".to_owned(),
            timed_out: "You took a while, so I stopped waiting for an answer.".to_owned(),
        }
    }

    /// Adds a step; the first added is asked first, [`Next::Continue`] goes to the following one.
    #[must_use]
    pub fn step(mut self, step: Step<S>) -> Self {
        self.steps.push(step);
        self
    }

    /// Runs `done` with the final state when the dialog is done (not when it is cancelled or
    /// times out).
    #[must_use]
    pub fn on_done<F, Fut, E>(mut self, done: F) -> Self
    where
        F: Fn(Context, S) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.on_done = Some(Arc::new(move |cx, state| {
            let fut = done(cx, state);
            Box::pin(async move { fut.await.map_err(Into::into) })
        }));
        self
    }

    /// How long the dialog waits for each answer; default [`DEFAULT_DIALOG_TIMEOUT`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What "cancel" answers; default `"Cancelled."`.
    #[must_use]
    pub fn cancelled_text(mut self, text: impl Into<String>) -> Self {
        self.cancelled = text.into();
        self
    }

    /// What the user's next message after the dialog timed out is answered with.
    #[must_use]
    pub fn timed_out_text(mut self, text: impl Into<String>) -> Self {
        self.timed_out = text.into();
        self
    }
}

/// A dialog with its state type erased, as [`Dialogs`] keeps them.
trait AnyDialog: Send + Sync + fmt::Debug {
    fn check(&self) -> Result<(), Error>;
    fn first_step(&self) -> &str;
    fn initial_state(&self) -> Result<Value, Error>;
    fn step(&self, name: &str) -> Result<StepView<'_>, Error>;
    fn step_after(&self, name: &str) -> Option<&str>;
    fn prompt(&self, step: &str, state: &Value) -> Result<crate::OutgoingMessage, Error>;
    fn accept(
        &self,
        step: &str,
        state: &mut Value,
        answer: &Answer,
    ) -> Result<Result<Next, Retry>, Error>;
    fn done(&self, cx: Context, state: Value) -> BoxFuture<Result<(), BoxError>>;
    fn timeout(&self) -> Duration;
    fn cancelled(&self) -> &str;
    fn timed_out(&self) -> &str;
}

/// What the engine reads of a step.
struct StepView<'a> {
    choices: &'a [Choice],
    buttons: bool,
    help: Option<&'a str>,
    takes_text: bool,
}

fn shape_error(dialog: &str, e: serde_json::Error) -> Error {
    Error::new(
        ErrorKind::State,
        format!("the stored state of dialog {dialog:?} has another shape"),
    )
    .with_source(e)
}

impl<S> Dialog<S>
where
    S: Serialize + DeserializeOwned + Default + Send + Sync + 'static,
{
    fn find(&self, name: &str) -> Result<&Step<S>, Error> {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::config(format!("dialog {:?} has no step {name:?}", self.name)))
    }

    fn typed(&self, state: &Value) -> Result<S, Error> {
        S::deserialize(state).map_err(|e| shape_error(&self.name, e))
    }

    fn untyped(&self, state: &S) -> Result<Value, Error> {
        serde_json::to_value(state).map_err(|e| {
            Error::new(
                ErrorKind::State,
                format!("the state of dialog {:?} is not serialisable", self.name),
            )
            .with_source(e)
        })
    }
}

impl<S> AnyDialog for Dialog<S>
where
    S: Serialize + DeserializeOwned + Default + Send + Sync + 'static,
{
    fn check(&self) -> Result<(), Error> {
        if self.steps.is_empty() {
            return Err(Error::config(format!(
                "dialog {:?} has no steps",
                self.name
            )));
        }
        for (i, step) in self.steps.iter().enumerate() {
            if self.steps[..i].iter().any(|s| s.name == step.name) {
                return Err(Error::config(format!(
                    "dialog {:?} has two steps named {:?}",
                    self.name, step.name
                )));
            }
        }
        Ok(())
    }

    fn first_step(&self) -> &str {
        self.steps.first().map_or("", |s| s.name.as_str())
    }

    fn initial_state(&self) -> Result<Value, Error> {
        self.untyped(&S::default())
    }

    fn step(&self, name: &str) -> Result<StepView<'_>, Error> {
        let step = self.find(name)?;
        Ok(StepView {
            choices: &step.choices,
            buttons: step.buttons,
            help: step.help.as_deref(),
            takes_text: step.accept.is_some(),
        })
    }

    fn step_after(&self, name: &str) -> Option<&str> {
        let i = self.steps.iter().position(|s| s.name == name)?;
        self.steps.get(i + 1).map(|s| s.name.as_str())
    }

    fn prompt(&self, step: &str, state: &Value) -> Result<crate::OutgoingMessage, Error> {
        Ok((self.find(step)?.prompt)(&self.typed(state)?))
    }

    fn accept(
        &self,
        step: &str,
        state: &mut Value,
        answer: &Answer,
    ) -> Result<Result<Next, Retry>, Error> {
        let found = self.find(step)?;
        let Some(accept) = &found.accept else {
            // Choices only: any choice goes on.
            return Ok(match answer.choice() {
                Some(_) => Ok(Next::Continue),
                None => Err(Retry::new(choose_one(&found.choices))),
            });
        };
        let mut typed = self.typed(state)?;
        let next = accept(&mut typed, answer);
        if next.is_ok() {
            *state = self.untyped(&typed)?;
        }
        Ok(next)
    }

    fn done(&self, cx: Context, state: Value) -> BoxFuture<Result<(), BoxError>> {
        let typed = match self.typed(&state) {
            Ok(typed) => typed,
            Err(e) => return Box::pin(async move { Err(e.into()) }),
        };
        match &self.on_done {
            Some(done) => done(cx, typed),
            None => Box::pin(async { Ok(()) }),
        }
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn cancelled(&self) -> &str {
        &self.cancelled
    }

    fn timed_out(&self) -> &str {
        &self.timed_out
    }
}

/// "Please choose one of: a, b or c."
fn choose_one(choices: &[Choice]) -> String {
    let labels: Vec<&str> = choices.iter().map(|c| c.label.as_str()).collect();
    match labels.split_last() {
        None => "Please answer the question.".to_owned(),
        Some((last, [])) => format!("Please choose {last}."),
        Some((last, rest)) => format!("Please choose {} or {last}.", rest.join(", ")),
    }
}

/// Where a conversation stands in its dialogs: the innermost open dialog and its step, as
/// [`Context::dialog`] gives it to routes and handlers.
#[derive(Debug, Clone, PartialEq)]
pub struct DialogPosition {
    dialog: String,
    step: String,
    state: Value,
}

impl DialogPosition {
    /// The innermost open dialog's name.
    pub fn dialog(&self) -> &str {
        &self.dialog
    }

    /// The step it is asking.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Its state so far.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::State`] when the stored state is not a `T`.
    pub fn state<T: DeserializeOwned>(&self) -> Result<T, Error> {
        T::deserialize(&self.state).map_err(|e| shape_error(&self.dialog, e))
    }
}

/// A handler that begins the dialog named `name`: the route that starts a dialog.
///
/// Runs only under [`Dialogs`]; elsewhere it fails with [`ErrorKind::Config`].
pub fn begin(name: impl Into<String>) -> impl crate::Handler {
    let name: Arc<str> = name.into().into();
    move |cx: Context, _event: Event| {
        let name = name.clone();
        async move { cx.begin_dialog(&name).await }
    }
}
