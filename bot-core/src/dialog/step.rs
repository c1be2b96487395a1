//! [`Step`]: one question of a dialog, and what an answer to it becomes ([`Answer`], [`Next`]).

use std::fmt;
use std::sync::Arc;

use crate::outbound::OutgoingMessage;

type Prompt<S> = Arc<dyn Fn(&S) -> OutgoingMessage + Send + Sync>;
type Accept<S> = Arc<dyn Fn(&mut S, &Answer) -> Result<Next, Retry> + Send + Sync>;

/// One question of a [`super::Dialog`]: what it asks, the choices it offers, and how it takes an
/// answer.
///
/// An answer comes either as a tap on one of the choices (a postback, whatever the platform) or
/// as typed text; both reach [`Step::accept`]'s function as one [`Answer`]. Typed text that names
/// a choice, by its label or its value, compared leniently ([`crate::router::TextMatch::LENIENT`]:
/// `" Two"` is `"two"`), counts as that choice.
///
/// A step without an `accept` function takes only its choices and re-asks otherwise; its state
/// is left as it is. To keep a choice's value, give one ([`Answer::choice`]).
pub struct Step<S> {
    pub(super) name: String,
    pub(super) prompt: Prompt<S>,
    pub(super) choices: Vec<Choice>,
    pub(super) buttons: bool,
    pub(super) accept: Option<Accept<S>>,
    pub(super) help: Option<String>,
}

impl<S> Clone for Step<S> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            prompt: self.prompt.clone(),
            choices: self.choices.clone(),
            buttons: self.buttons,
            accept: self.accept.clone(),
            help: self.help.clone(),
        }
    }
}

impl<S> fmt::Debug for Step<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("choices", &self.choices)
            .field("buttons", &self.buttons)
            .finish_non_exhaustive()
    }
}

impl<S> Step<S> {
    /// A step named `name` (unique within its dialog; routes match on it) that asks `prompt`,
    /// made from the dialog's state so far.
    pub fn new(
        name: impl Into<String>,
        prompt: impl Fn(&S) -> OutgoingMessage + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            prompt: Arc::new(prompt),
            choices: Vec::new(),
            buttons: false,
            accept: None,
            help: None,
        }
    }

    /// Offers a choice showing `label` whose value is `value`.
    #[must_use]
    pub fn choice(mut self, label: impl Into<String>, value: impl Into<String>) -> Self {
        self.choices.push(Choice {
            label: label.into(),
            value: value.into(),
        });
        self
    }

    /// Offers choices whose labels are their values.
    #[must_use]
    pub fn choices<I>(mut self, labels: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        for label in labels {
            let label = label.into();
            self = self.choice(label.clone(), label);
        }
        self
    }

    /// Shows the choices as buttons on the question instead of quick replies under it.
    /// Mind each platform's limit on buttons (LINE: 4, Messenger: 3, Discord: 25).
    #[must_use]
    pub fn as_buttons(mut self) -> Self {
        self.buttons = true;
        self
    }

    /// What a "help" at this step answers, before the question is asked again.
    #[must_use]
    pub fn help(mut self, text: impl Into<String>) -> Self {
        self.help = Some(text.into());
        self
    }

    /// Takes an answer into the state: `Ok` with where to go next, or `Err(`[`Retry`]`)` to
    /// say why the answer was refused and ask again.
    #[must_use]
    pub fn accept(
        mut self,
        accept: impl Fn(&mut S, &Answer) -> Result<Next, Retry> + Send + Sync + 'static,
    ) -> Self {
        self.accept = Some(Arc::new(accept));
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A choice a step offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// What the quick reply or button shows.
    pub label: String,
    /// What choosing it answers.
    pub value: String,
}

/// An answer to a step: a tapped or typed choice, or free text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub(super) text: String,
    pub(super) choice: Option<String>,
    pub(super) tapped: bool,
}

impl Answer {
    /// The value: the choice's value when one was chosen, else the typed text, trimmed.
    pub fn value(&self) -> &str {
        self.choice.as_deref().unwrap_or(&self.text)
    }

    /// The chosen choice's value, if the answer named or tapped one.
    pub fn choice(&self) -> Option<&str> {
        self.choice.as_deref()
    }

    /// The text as typed (trimmed), or the tapped choice's label.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the answer is a tap on a choice rather than typed text.
    pub fn was_tapped(&self) -> bool {
        self.tapped
    }
}

/// Where a dialog goes after an accepted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Next {
    /// To the next step; after the last, the dialog is done.
    Continue,
    /// To the step with this name.
    Goto(String),
    /// The dialog is done: its [`super::Dialog::on_done`] runs with the state.
    Done,
    /// Into the dialog with this name, nested: when it is done (or cancelled), this dialog goes
    /// on with its next step.
    Begin(String),
    /// The dialog is cancelled, as if the user had said "cancel".
    Cancel,
}

/// An answer refused, with what to tell the user before the question is asked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry(pub(super) String);

impl Retry {
    /// Refuses the answer, telling the user `why`.
    pub fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}
