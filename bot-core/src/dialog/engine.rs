//! [`Dialogs`]: the handler that runs dialogs in front of a router.
//!
//! What one event says goes out as one reply (LINE takes one reply per reply token).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::record::{Clock, Effect, Frame, Record};
use super::{Answer, AnyDialog, DIALOG_POSTBACK_PREFIX, Dialog, DialogPosition, Next, Retry};
use crate::context::Context;
use crate::error::{BoxError, Error, ErrorKind};
use crate::event::{Event, EventKind};
use crate::handler::Handler;
use crate::outbound::{Button, OutgoingMessage, QuickReply};
use crate::router::{Router, TextMatch};
use crate::state::{StateKey, Versioned};

/// How long a record outlives its dialog: long enough for a retried event to find what it
/// did, and for a late message to learn that the dialog timed out.
const RECORD_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// The handler that runs [`Dialog`]s in front of a [`Router`]: see the [module docs](super).
///
/// While a dialog is open, the conversation's text messages and the dialog's taps are answers
/// to it, except what a route made with [`Router::in_dialog`] or [`Router::in_step`] matches;
/// other events (a follow, a command, a postback of another button) go to the router. With no
/// dialog open, everything goes to the router, whose routes start dialogs with
/// [`super::begin`].
#[derive(Clone)]
#[must_use]
pub struct Dialogs {
    inner: Arc<Inner>,
}

struct Inner {
    router: Router,
    dialogs: HashMap<String, Arc<dyn AnyDialog>>,
    /// The first mistake in the dialogs given, reported by every call.
    misconfigured: Option<String>,
    per_user: bool,
    cancel_words: Vec<String>,
    help_words: Vec<String>,
    stale: String,
    ended: String,
    help: String,
    clock: Clock,
}

impl fmt::Debug for Dialogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.inner.dialogs.keys().collect();
        names.sort();
        f.debug_struct("Dialogs")
            .field("dialogs", &names)
            .field("per_user", &self.inner.per_user)
            .field("router", &self.inner.router)
            .finish_non_exhaustive()
    }
}

impl Dialogs {
    /// Dialogs in front of `router`, which gets every event no dialog takes.
    pub fn new(router: Router) -> Self {
        Self {
            inner: Arc::new(Inner {
                router,
                dialogs: HashMap::new(),
                misconfigured: None,
                per_user: false,
                cancel_words: vec!["cancel".to_owned()],
                help_words: vec!["help".to_owned()],
                stale: "That question was already answered. Here is where we are:".to_owned(),
                ended: "That conversation has ended.".to_owned(),
                help: "Answer the question, or say \"cancel\" to stop.".to_owned(),
                clock: Clock::new(),
            }),
        }
    }

    fn edit(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        // Built before it is shared: the Arc has one owner until the handler is cloned.
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => {
                let mut inner = self.inner.copy();
                change(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// Adds a dialog. A dialog without steps, with two steps of one name, or with the name of
    /// one added before makes every event fail with [`ErrorKind::Config`] naming the mistake
    /// ([`Dialogs::check`] finds it at start-up).
    pub fn dialog<S>(self, dialog: Dialog<S>) -> Self
    where
        S: serde::Serialize + serde::de::DeserializeOwned + Default + Send + Sync + 'static,
    {
        self.edit(|inner| {
            let problem = match dialog.check() {
                Err(e) => Some(e.to_string()),
                Ok(()) if inner.dialogs.contains_key(&dialog.name) => {
                    Some(format!("two dialogs are named {:?}", dialog.name))
                }
                Ok(()) => None,
            };
            if inner.misconfigured.is_none() {
                inner.misconfigured = problem;
            }
            inner.dialogs.insert(dialog.name.clone(), Arc::new(dialog));
        })
    }

    /// Each member of a conversation has their own dialogs (on Discord, where a conversation
    /// is a channel, so that two members can book at once); default: one per conversation.
    /// Events without a sender go to the router.
    pub fn per_user(self, per_user: bool) -> Self {
        self.edit(|inner| inner.per_user = per_user)
    }

    /// Words that cancel the open dialogs at any step, compared leniently; default `["cancel"]`.
    pub fn cancel_words<I>(self, words: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let words = fold_all(words);
        self.edit(|inner| inner.cancel_words = words)
    }

    /// Words that ask for help at any step; default `["help"]`. The step's [`super::Step::help`]
    /// answers, else [`Dialogs::help_text`], then the question is asked again.
    pub fn help_words<I>(self, words: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let words = fold_all(words);
        self.edit(|inner| inner.help_words = words)
    }

    /// What help says at a step without its own.
    pub fn help_text(self, text: impl Into<String>) -> Self {
        let text = text.into();
        self.edit(|inner| inner.help = text)
    }

    /// What a tap on a question already answered gets, before the current question.
    pub fn stale_text(self, text: impl Into<String>) -> Self {
        let text = text.into();
        self.edit(|inner| inner.stale = text)
    }

    /// What a tap on a question of a dialog that has ended gets.
    pub fn ended_text(self, text: impl Into<String>) -> Self {
        let text = text.into();
        self.edit(|inner| inner.ended = text)
    }

    /// The first mistake in the dialogs given, if any.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming it.
    pub fn check(&self) -> Result<(), Error> {
        match &self.inner.misconfigured {
            Some(problem) => Err(Error::config(problem.clone())),
            None => Ok(()),
        }
    }
}

fn fold_all<I>(words: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: Into<String>,
{
    (words.into_iter())
        .map(|w| TextMatch::LENIENT.fold(&w.into()).into_owned())
        .collect()
}

/// What one event's dialog handling knows, shared with its context: for routes
/// ([`Context::dialog`]) and for [`Context::begin_dialog`].
pub(crate) struct Session {
    engine: Arc<Inner>,
    key: StateKey,
    version: Option<u64>,
    record: Record,
    event_id: String,
    position: Option<DialogPosition>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("key", &self.key)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn position(&self) -> Option<&DialogPosition> {
        self.position.as_ref()
    }

    /// Begins `name`, replacing any open dialog: asks its first step.
    pub(crate) async fn begin(&self, cx: &Context, name: &str) -> Result<(), Error> {
        let engine = &self.engine;
        let dialog = engine.get(name)?;
        let mut record = self.record.clone();
        record.frames = vec![Frame {
            dialog: name.to_owned(),
            step: dialog.first_step().to_owned(),
            state: dialog.initial_state()?,
        }];
        let mut effects = Vec::new();
        engine.ask(&mut record, &mut effects)?;
        (engine.commit(cx, &self.key, self.version, record, &self.event_id, effects))
            .await
            .map_err(|e| match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(e) => Error::new(ErrorKind::Other, "a dialog's on_done failed").with_source(e),
            })
    }
}

/// What a message or tap means to the open dialog.
enum Reading {
    Answer(Answer),
    Cancel,
    Help,
    Stale,
    Refused(String),
}

impl Inner {
    fn copy(&self) -> Self {
        Self {
            router: self.router.clone(),
            dialogs: self.dialogs.clone(),
            misconfigured: self.misconfigured.clone(),
            per_user: self.per_user,
            cancel_words: self.cancel_words.clone(),
            help_words: self.help_words.clone(),
            stale: self.stale.clone(),
            ended: self.ended.clone(),
            help: self.help.clone(),
            clock: self.clock,
        }
    }

    fn get(&self, name: &str) -> Result<&Arc<dyn AnyDialog>, Error> {
        self.dialogs
            .get(name)
            .ok_or_else(|| Error::config(format!("no dialog is named {name:?}")))
    }

    fn key(&self, event: &Event) -> Option<StateKey> {
        let user = match (self.per_user, &event.sender) {
            (false, _) => None,
            (true, Some(user)) => Some(user.clone()),
            (true, None) => return None,
        };
        Some(StateKey::Dialog {
            platform: event.platform.clone(),
            conversation: event.conversation.clone(),
            user,
        })
    }

    /// Asks the innermost dialog's step, the prompt with its choices: as a new question (taps
    /// on earlier ones are stale from now on), or as the current one again.
    fn ask(&self, record: &mut Record, effects: &mut Vec<Effect>) -> Result<(), Error> {
        record.asked += 1;
        self.ask_again(record, effects)
    }

    /// Asks the current question again, under its number: its earlier taps stay valid.
    fn ask_again(&self, record: &mut Record, effects: &mut Vec<Effect>) -> Result<(), Error> {
        let Some(frame) = record.top() else {
            return Ok(());
        };
        let dialog = self.get(&frame.dialog)?;
        let step = dialog.step(&frame.step)?;
        let mut message = dialog.prompt(&frame.step, &frame.state)?;
        for choice in step.choices {
            let data = format!("{DIALOG_POSTBACK_PREFIX}{}:{}", record.asked, choice.value);
            if step.buttons {
                message = message.button(Button::postback(&choice.label, data));
            } else {
                message = message.quick_reply(QuickReply::postback(&choice.label, data));
            }
        }
        record.expires_at_ms = self
            .clock
            .now_ms()
            .saturating_add(u64::try_from(dialog.timeout().as_millis()).unwrap_or(u64::MAX));
        effects.push(Effect::Say {
            message: Box::new(message),
        });
        Ok(())
    }

    /// Goes where `next` says from the innermost dialog, finishing dialogs on the way.
    fn advance(
        &self,
        record: &mut Record,
        mut next: Next,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Error> {
        loop {
            let Some(frame) = record.frames.last_mut() else {
                return Ok(());
            };
            let dialog = self.get(&frame.dialog)?.clone();
            match next {
                Next::Continue => match dialog.step_after(&frame.step) {
                    Some(step) => {
                        frame.step = step.to_owned();
                        return self.ask(record, effects);
                    }
                    None => next = Next::Done,
                },
                Next::Goto(step) => {
                    dialog.step(&step)?;
                    frame.step = step;
                    return self.ask(record, effects);
                }
                Next::Begin(name) => {
                    let child = self.get(&name)?;
                    let frame = Frame {
                        step: child.first_step().to_owned(),
                        state: child.initial_state()?,
                        dialog: name,
                    };
                    record.frames.push(frame);
                    return self.ask(record, effects);
                }
                Next::Done => {
                    if let Some(done) = record.frames.pop() {
                        effects.push(Effect::Done {
                            dialog: done.dialog,
                            state: done.state,
                        });
                    }
                    // The parent, if any, goes on past the step that began this one.
                    next = Next::Continue;
                }
                Next::Cancel => {
                    let message = OutgoingMessage::text(dialog.cancelled());
                    effects.push(Effect::Say {
                        message: Box::new(message),
                    });
                    record.frames.clear();
                    return Ok(());
                }
            }
        }
    }

    /// What `event` means to the step the record is at.
    fn read(&self, record: &Record, event: &Event) -> Result<Option<Reading>, Error> {
        let Some(frame) = record.top() else {
            return Ok(None);
        };
        let step = self.get(&frame.dialog)?.step(&frame.step)?;
        let lenient = TextMatch::LENIENT;
        let reading = match &event.kind {
            EventKind::Postback(postback) => {
                let Some(tap) = postback.data.strip_prefix(DIALOG_POSTBACK_PREFIX) else {
                    return Ok(None);
                };
                let chosen = tap.split_once(':').and_then(|(asked, value)| {
                    let current = asked.parse::<u64>().ok()? == record.asked;
                    let choice = step.choices.iter().find(|c| c.value == value)?;
                    current.then_some(choice)
                });
                match chosen {
                    Some(choice) => Reading::Answer(Answer {
                        text: choice.label.clone(),
                        choice: Some(choice.value.clone()),
                        tapped: true,
                    }),
                    None => Reading::Stale,
                }
            }
            EventKind::Message(message) => {
                let Some(text) = message.text.as_deref() else {
                    return Ok(None);
                };
                let folded = lenient.fold(text);
                let choice = (step.choices.iter())
                    .find(|c| lenient.fold(&c.label) == folded || lenient.fold(&c.value) == folded);
                if self.cancel_words.iter().any(|w| *w == folded) {
                    Reading::Cancel
                } else if self.help_words.iter().any(|w| *w == folded) {
                    Reading::Help
                } else if let Some(choice) = choice {
                    Reading::Answer(Answer {
                        text: text.trim().to_owned(),
                        choice: Some(choice.value.clone()),
                        tapped: false,
                    })
                } else if step.takes_text {
                    Reading::Answer(Answer {
                        text: text.trim().to_owned(),
                        choice: None,
                        tapped: false,
                    })
                } else {
                    Reading::Refused(super::choose_one(step.choices))
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(reading))
    }

    /// Saves `record` as what `event_id` did (compare-and-swap on `version`), then does it.
    async fn commit(
        &self,
        cx: &Context,
        key: &StateKey,
        version: Option<u64>,
        mut record: Record,
        event_id: &str,
        effects: Vec<Effect>,
    ) -> Result<(), BoxError> {
        let ttl = match record.top() {
            Some(frame) => self.get(&frame.dialog)?.timeout() + RECORD_GRACE,
            None => RECORD_GRACE,
        };
        record.last_event = Some(event_id.to_owned());
        record.effects = effects;
        let json = serde_json::to_value(&record).map_err(|e| {
            Error::new(ErrorKind::State, "a dialog record is not serialisable").with_source(e)
        })?;
        (cx.state_store())
            .save_expiring(key, json, version, Some(ttl))
            .await?;
        self.perform(cx, &record.effects).await
    }

    /// Does `effects` in order; what is said in a row goes out as one reply (LINE takes one
    /// reply per reply token, up to five messages).
    async fn perform(&self, cx: &Context, effects: &[Effect]) -> Result<(), BoxError> {
        let mut said = Vec::new();
        for effect in effects {
            match effect {
                Effect::Say { message } => said.push((**message).clone()),
                Effect::Done { dialog, state } => {
                    if !said.is_empty() {
                        cx.reply_all(std::mem::take(&mut said)).await?;
                    }
                    self.get(dialog)?.done(cx.clone(), state.clone()).await?;
                }
            }
        }
        if !said.is_empty() {
            cx.reply_all(said).await?;
        }
        Ok(())
    }

    async fn load(&self, cx: &Context, key: &StateKey) -> Result<(Record, Option<u64>), Error> {
        match cx.state_store().load(key).await? {
            None => Ok((Record::default(), None)),
            Some(Versioned { value, version }) => {
                let record = serde_json::from_value(value).map_err(|e| {
                    Error::new(
                        ErrorKind::State,
                        format!("the record of {key} is not a dialog record"),
                    )
                    .with_source(e)
                })?;
                Ok((record, Some(version)))
            }
        }
    }

    fn position(&self, record: &Record) -> Option<DialogPosition> {
        record.top().map(|frame| DialogPosition {
            dialog: frame.dialog.clone(),
            step: frame.step.clone(),
            state: frame.state.clone(),
        })
    }
}

#[async_trait]
impl Handler for Dialogs {
    async fn call(&self, cx: Context, event: Event) -> Result<(), BoxError> {
        let inner = &self.inner;
        self.check()?;
        let Some(key) = inner.key(&event) else {
            return inner.router.call(cx, event).await;
        };
        let event_id = event.id.to_string();
        let (mut record, version) = inner.load(&cx, &key).await?;
        if record.last_event.as_deref() == Some(event_id.as_str()) {
            // Retried after its write: do again what it did, apply nothing twice.
            return inner.perform(&cx, &record.effects).await;
        }
        if let Some(frame) = record.top()
            && record.expires_at_ms <= inner.clock.now_ms()
        {
            // The message answers the time-out alone: a second reply would need a second reply
            // token, which LINE does not give.
            let message = OutgoingMessage::text(inner.get(&frame.dialog)?.timed_out());
            record.frames.clear();
            let effects = vec![Effect::Say {
                message: Box::new(message),
            }];
            return (inner.commit(&cx, &key, version, record, &event_id, effects)).await;
        }
        let session = Arc::new(Session {
            engine: inner.clone(),
            key: key.clone(),
            version,
            record: record.clone(),
            event_id: event_id.clone(),
            position: inner.position(&record),
        });
        let cx = cx.with_dialog_session(session.clone());
        if record.frames.is_empty() {
            let our_tap = matches!(&event.kind, EventKind::Postback(p)
                if p.data.starts_with(DIALOG_POSTBACK_PREFIX));
            if our_tap {
                return Ok(cx.reply(inner.ended.as_str()).await?);
            }
            return inner.router.call(cx, event).await;
        }
        if inner.router.has_dialog_route(&event, session.position()) {
            return inner.router.call(cx, event).await;
        }
        let Some(reading) = inner.read(&record, &event)? else {
            return inner.router.call(cx, event).await;
        };
        let mut effects = Vec::new();
        match reading {
            Reading::Answer(answer) => {
                let frame = record.frames.last_mut().ok_or("no open dialog")?;
                let dialog = inner.get(&frame.dialog)?.clone();
                match dialog.accept(&frame.step, &mut frame.state, &answer)? {
                    Ok(next) => inner.advance(&mut record, next, &mut effects)?,
                    Err(Retry(why)) => {
                        effects.push(Effect::Say {
                            message: Box::new(OutgoingMessage::text(why)),
                        });
                        inner.ask_again(&mut record, &mut effects)?;
                    }
                }
            }
            Reading::Cancel => inner.advance(&mut record, Next::Cancel, &mut effects)?,
            Reading::Help => {
                let frame = record.top().ok_or("no open dialog")?;
                let step = inner.get(&frame.dialog)?.step(&frame.step)?;
                let help = step.help.unwrap_or(&inner.help).to_owned();
                effects.push(Effect::Say {
                    message: Box::new(OutgoingMessage::text(help)),
                });
                inner.ask_again(&mut record, &mut effects)?;
            }
            Reading::Refused(why) => {
                effects.push(Effect::Say {
                    message: Box::new(OutgoingMessage::text(why)),
                });
                inner.ask_again(&mut record, &mut effects)?;
            }
            Reading::Stale => {
                // Nothing changes: the current question again, its taps still valid.
                effects.push(Effect::Say {
                    message: Box::new(OutgoingMessage::text(inner.stale.as_str())),
                });
                inner.ask_again(&mut record, &mut effects)?;
                return inner.perform(&cx, &effects).await;
            }
        }
        inner
            .commit(&cx, &key, version, record, &event_id, effects)
            .await
    }

    fn timeout(&self, event: &Event) -> Option<Duration> {
        self.inner.router.timeout(event)
    }
}
