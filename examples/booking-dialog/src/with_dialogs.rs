//! The booking as a dialog: "book", a party size from quick replies, a time from buttons, a
//! confirmation; "cancel", "help" and "status" at any step.

use bot_core::dialog::{self, Dialog, Dialogs, Next, Retry, Step};
use bot_core::router::TextMatch;
use bot_core::{Context, Error, Event, Router};
use serde::{Deserialize, Serialize};

/// What a booking gathers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Booking {
    /// How many people.
    pub size: u32,
    /// When, as `HH:MM`.
    pub time: String,
}

// ANCHOR: dialog
/// The booking dialog.
pub fn booking() -> Dialog<Booking> {
    Dialog::new("booking")
        .step(
            Step::new("size", |_: &Booking| "How many people?".into())
                .choices(["1", "2", "3", "4"])
                .help("Tap a number, or type one from 1 to 8.")
                .accept(|booking, answer| {
                    booking.size = (answer.value().parse().ok())
                        .filter(|size| (1..=8).contains(size))
                        .ok_or_else(|| Retry::new("A number from 1 to 8, please."))?;
                    Ok(Next::Continue)
                }),
        )
        .step(
            Step::new("time", |b: &Booking| {
                format!("A table for {}: what time?", b.size).into()
            })
            .choice("6 pm", "18:00")
            .choice("7 pm", "19:00")
            .choice("8 pm", "20:00")
            .as_buttons()
            .accept(|booking, answer| {
                let time = answer.choice().ok_or_else(|| Retry::new("6, 7 or 8 pm?"))?;
                booking.time = time.to_owned();
                Ok(Next::Continue)
            }),
        )
        .step(
            Step::new("confirm", |b: &Booking| {
                format!("{} people at {}. Shall I book it?", b.size, b.time).into()
            })
            .choices(["yes", "no"])
            .accept(|_, answer| match answer.choice() {
                Some("yes") => Ok(Next::Done),
                Some(_) => Ok(Next::Cancel),
                None => Err(Retry::new("Yes or no?")),
            }),
        )
        .on_done(|cx: Context, b: Booking| async move {
            cx.reply(format!("Booked: {} people at {}. See you!", b.size, b.time))
                .await
        })
}
// ANCHOR_END: dialog

// ANCHOR: handler
/// The bot's handler: the dialog in front of a router that starts it.
pub fn handler() -> Dialogs {
    let router = Router::new()
        .text_match(TextMatch::LENIENT)
        .in_dialog("booking", Router::new().text_exact("status", status))
        .text_exact("book", dialog::begin("booking"))
        .text_exact("status", |cx: Context, _: Event| async move {
            cx.reply("No booking in progress. Say \"book\" to start one.")
                .await
        })
        .fallback(|cx: Context, _: Event| async move {
            cx.reply("Hello! Say \"book\" to book a table.").await
        });
    // Each member of a group or Discord channel books for themselves.
    Dialogs::new(router).per_user(true).dialog(booking())
}
// ANCHOR_END: handler

/// "status" during a booking: what is known so far.
async fn status(cx: Context, _event: Event) -> Result<(), Error> {
    let Some(at) = cx.dialog() else {
        return Ok(());
    };
    let booking: Booking = at.state()?;
    let text = match at.step() {
        "size" => "Booking: waiting for the party size.".to_owned(),
        "time" => format!("Booking for {}: waiting for the time.", booking.size),
        _ => format!(
            "Booking for {} at {}: waiting for your yes.",
            booking.size, booking.time
        ),
    };
    cx.reply(text).await
}
