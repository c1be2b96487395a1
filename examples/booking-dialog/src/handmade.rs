//! The same booking written by hand, as a bot without dialogs is: a step enum in the user's
//! state, one route for typed text and one for taps, each loading the state, branching on the
//! step and saving it back with compare-and-swap; re-prompts, cancel, help, status, a time-out
//! and stale taps done by hand. It answers every path as the dialog version does
//! (`tests/paths.rs` walks both).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bot_core::outbound::{Button, QuickReply};
use bot_core::router::TextMatch;
use bot_core::{Context, Error, Event, EventKind, OutgoingMessage, Router};
use serde::{Deserialize, Serialize};

/// How long a question waits for its answer.
const TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long the state outlives a booking, so that a late tap learns that it ended.
const GRACE: Duration = Duration::from_secs(24 * 60 * 60);
/// What starts the data of the booking's taps: `book:<question number>:<value>`.
const TAP: &str = "book:";

const HELLO: &str = "Hello! Say \"book\" to book a table.";
const NO_BOOKING: &str = "No booking in progress. Say \"book\" to start one.";
const CANCELLED: &str = "Cancelled.";
const HELP: &str = "Answer the question, or say \"cancel\" to stop.";
const STALE: &str = "That question was already answered. Here is where we are:";
const ENDED: &str = "That conversation has ended.";
const TIMED_OUT: &str = "You took a while, so I stopped waiting for an answer.";

/// The question a booking is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Step {
    Size,
    Time,
    Confirm,
}

/// Where a user's booking stands, in their state within the conversation.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Booking {
    /// The question asked; `None` when no booking is open.
    step: Option<Step>,
    size: u32,
    time: String,
    /// How many questions were asked: a tap carries its question's number, so that a tap on a
    /// question already answered is told apart.
    asked: u64,
    /// When the question times out, in milliseconds since the Unix epoch.
    expires_at_ms: u64,
}

/// What the user said: typed text, or a tap on the question with this number.
enum Said {
    Text(String),
    Tap(u64, String),
}

/// The bot's handler: a router whose text and tap routes run the booking.
pub fn handler() -> Router {
    Router::new()
        .text_match(TextMatch::LENIENT)
        .postback_prefix(TAP, on_tap)
        .text(|cx: Context, event: Event| async move {
            let text = event.text_content().unwrap_or_default().trim().to_owned();
            handle(cx, Said::Text(text)).await
        })
        .fallback(|cx: Context, _: Event| async move { cx.reply(HELLO).await })
}

async fn on_tap(cx: Context, event: Event) -> Result<(), Error> {
    let EventKind::Postback(postback) = &event.kind else {
        return Ok(());
    };
    let tap = (postback.data.strip_prefix(TAP))
        .and_then(|tap| tap.split_once(':'))
        .and_then(|(asked, value)| Some((asked.parse().ok()?, value.to_owned())));
    match tap {
        Some((asked, value)) => handle(cx, Said::Tap(asked, value)).await,
        None => cx.reply(ENDED).await,
    }
}

async fn handle(cx: Context, said: Said) -> Result<(), Error> {
    let state = cx
        .user_in_conversation_state()?
        .expire_after(TIMEOUT + GRACE);
    let loaded = state.load::<Booking>().await?;
    let version = loaded.as_ref().map(|v| v.version);
    let mut booking = loaded.map(|v| v.value).unwrap_or_default();
    let replies = match (booking.step, said) {
        (Some(_), _) if booking.expires_at_ms <= now_ms() => {
            booking.step = None;
            vec![TIMED_OUT.into()]
        }
        (Some(step), said) => booking.answer(step, said),
        (None, Said::Tap(..)) => return cx.reply(ENDED).await,
        (None, Said::Text(text)) => match fold(&text).as_str() {
            "book" => {
                booking = Booking {
                    asked: booking.asked,
                    ..Booking::default()
                };
                booking.ask(Step::Size)
            }
            "status" => return cx.reply(NO_BOOKING).await,
            _ => return cx.reply(HELLO).await,
        },
    };
    // Another process may have answered first: then this fails and the event is retried.
    state.save(&booking, version).await?;
    cx.reply_all(replies).await
}

impl Booking {
    /// Takes what the user said at `step`: an answer, or "cancel", "help" or "status".
    fn answer(&mut self, step: Step, said: Said) -> Vec<OutgoingMessage> {
        let answer = match said {
            Said::Tap(asked, value)
                if asked == self.asked && choices(step).iter().any(|(_, v)| *v == value) =>
            {
                value
            }
            Said::Tap(..) => return self.again(STALE),
            Said::Text(text) => match fold(&text).as_str() {
                "cancel" => return self.cancel(),
                "help" if step == Step::Size => {
                    return self.again("Tap a number, or type one from 1 to 8.");
                }
                "help" => return self.again(HELP),
                "status" => return vec![self.status(step).into()],
                folded => (choices(step).iter())
                    .find(|(label, value)| fold(label) == folded || fold(value) == folded)
                    .map_or(text, |(_, value)| (*value).to_owned()),
            },
        };
        match step {
            Step::Size => match answer.parse().ok().filter(|size| (1..=8).contains(size)) {
                Some(size) => {
                    self.size = size;
                    self.ask(Step::Time)
                }
                None => self.again("A number from 1 to 8, please."),
            },
            Step::Time if choices(step).iter().any(|(_, time)| *time == answer) => {
                self.time = answer;
                self.ask(Step::Confirm)
            }
            Step::Time => self.again("6, 7 or 8 pm?"),
            Step::Confirm if answer == "yes" => {
                self.step = None;
                let booked = format!("Booked: {} people at {}. See you!", self.size, self.time);
                vec![booked.into()]
            }
            Step::Confirm if answer == "no" => self.cancel(),
            Step::Confirm => self.again("Yes or no?"),
        }
    }

    /// Asks `step` as a new question: taps on earlier ones are stale from now on.
    fn ask(&mut self, step: Step) -> Vec<OutgoingMessage> {
        self.step = Some(step);
        self.asked += 1;
        vec![self.question(step)]
    }

    /// Says `why`, then asks the current question again (its taps stay valid).
    fn again(&mut self, why: &str) -> Vec<OutgoingMessage> {
        let step = self.step.unwrap_or(Step::Size);
        vec![why.into(), self.question(step)]
    }

    fn cancel(&mut self) -> Vec<OutgoingMessage> {
        self.step = None;
        vec![CANCELLED.into()]
    }

    /// The question of `step` with its choices, each tap carrying the question's number.
    fn question(&mut self, step: Step) -> OutgoingMessage {
        self.expires_at_ms = now_ms().saturating_add(TIMEOUT.as_secs() * 1000);
        let text = match step {
            Step::Size => "How many people?".to_owned(),
            Step::Time => format!("A table for {}: what time?", self.size),
            Step::Confirm => format!("{} people at {}. Shall I book it?", self.size, self.time),
        };
        let mut question = OutgoingMessage::text(text);
        for (label, value) in choices(step) {
            let data = format!("{TAP}{}:{value}", self.asked);
            question = match step {
                Step::Time => question.button(Button::postback(*label, data)),
                _ => question.quick_reply(QuickReply::postback(*label, data)),
            };
        }
        question
    }

    fn status(&self, step: Step) -> String {
        match step {
            Step::Size => "Booking: waiting for the party size.".to_owned(),
            Step::Time => format!("Booking for {}: waiting for the time.", self.size),
            Step::Confirm => format!(
                "Booking for {} at {}: waiting for your yes.",
                self.size, self.time
            ),
        }
    }
}

/// The choices a step offers, as (label, value).
fn choices(step: Step) -> &'static [(&'static str, &'static str)] {
    match step {
        Step::Size => &[("1", "1"), ("2", "2"), ("3", "3"), ("4", "4")],
        Step::Time => &[("6 pm", "18:00"), ("7 pm", "19:00"), ("8 pm", "20:00")],
        Step::Confirm => &[("yes", "yes"), ("no", "no")],
    }
}

/// Text as phone keyboards type it: " Yes" is "yes".
fn fold(text: &str) -> String {
    TextMatch::LENIENT.fold(text).into_owned()
}

/// Wall-clock milliseconds that follow Tokio's clock: the state crosses processes, and tests
/// with paused time see a booking time out as the clock advances.
fn now_ms() -> u64 {
    static START: OnceLock<(u64, tokio::time::Instant)> = OnceLock::new();
    let (start_ms, start) = START.get_or_init(|| {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
        let ms = since_epoch.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        (ms, tokio::time::Instant::now())
    });
    let elapsed = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    start_ms.saturating_add(elapsed)
}
