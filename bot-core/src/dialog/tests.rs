//! Dialogs through a real bot: every path of a small booking.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;
use crate::event::Platform;
use crate::outbound::Action;
use crate::router::{Router, TextMatch};
use crate::testing::{self, TestBot};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Booking {
    size: u32,
    time: String,
    phone: String,
}

fn booking() -> Dialog<Booking> {
    Dialog::<Booking>::new("booking")
        .timeout(Duration::from_secs(600))
        .step(
            Step::new("size", |_: &Booking| "How many people?".into())
                .choices(["1", "2", "3", "4"])
                .help("Tap a number, or type one up to 8.")
                .accept(|b: &mut Booking, a: &Answer| {
                    match a.value().parse::<u32>() {
                        Ok(n @ 1..=8) => b.size = n,
                        _ => return Err(Retry::new("A number from 1 to 8, please.")),
                    }
                    Ok(Next::Continue)
                }),
        )
        .step(
            Step::new("time", |b: &Booking| {
                format!("What time for {}?", b.size).into()
            })
            .choice("7 pm", "19:00")
            .choice("8 pm", "20:00")
            .as_buttons()
            .accept(|b: &mut Booking, a: &Answer| {
                b.time = a.choice().ok_or(Retry::new("7 pm or 8 pm?"))?.to_owned();
                Ok(Next::Begin("contact".into()))
            }),
        )
        .step(
            Step::new("confirm", |b: &Booking| {
                format!("{} at {}, yes?", b.size, b.time).into()
            })
            .choices(["yes", "no"])
            .accept(|_: &mut Booking, a: &Answer| {
                Ok(if a.choice() == Some("yes") {
                    Next::Done
                } else {
                    Next::Cancel
                })
            }),
        )
        .on_done(|cx: Context, b: Booking| async move {
            cx.reply(format!("Booked: {} at {}", b.size, b.time)).await
        })
}

/// A nested dialog, begun by the booking's time step.
fn contact() -> Dialog<Booking> {
    Dialog::<Booking>::new("contact")
        .step(
            Step::new("phone", |_: &Booking| "Your phone number?".into()).accept(
                |b: &mut Booking, a: &Answer| {
                    if a.text().chars().all(|c| c.is_ascii_digit()) && a.text().len() >= 6 {
                        b.phone = a.text().to_owned();
                        Ok(Next::Done)
                    } else {
                        Err(Retry::new("Digits only, at least 6."))
                    }
                },
            ),
        )
        .on_done(|cx: Context, b: Booking| async move {
            cx.reply(format!("We will call {}", b.phone)).await
        })
}

fn handler() -> Dialogs {
    let status = |cx: Context, _e: Event| async move {
        let at = cx.dialog().expect("in a dialog");
        let text = format!("at {}/{}", at.dialog(), at.step());
        cx.reply(text).await
    };
    let router = Router::new()
        .text_match(TextMatch::LENIENT)
        .in_dialog("booking", Router::new().text_exact("status", status))
        .text_exact("book", begin("booking"))
        .text_exact("status", |cx: Context, _e: Event| async move {
            cx.reply("no booking").await
        })
        .fallback(|cx: Context, _e: Event| async move { cx.reply("?").await });
    Dialogs::new(router).dialog(booking()).dialog(contact())
}

fn bot() -> TestBot {
    TestBot::builder().handler(handler()).build().unwrap()
}

/// Sends `event`, waits until it is handled, returns the texts it made (quick replies and
/// buttons as `[label]`).
async fn say(bot: &TestBot, event: Event) -> Vec<String> {
    let before = bot.sent().len();
    bot.send(event).await.unwrap();
    bot.idle().await;
    (bot.sent()[before..].iter())
        .flat_map(|sent| sent.messages.iter())
        .flat_map(|m| {
            let choices = (m.quick_replies.iter().map(|q| &q.label))
                .chain(m.buttons.iter().map(|b| &b.label))
                .map(|label| format!("[{label}]"));
            m.text.clone().into_iter().chain(choices)
        })
        .collect()
}

/// The postback data of the choice labelled `label` in the last message sent.
fn tap_data(bot: &TestBot, label: &str) -> String {
    let sent = bot.sent();
    let last = sent.last().unwrap().messages.last().unwrap();
    let action = (last.quick_replies.iter().map(|q| (&q.label, &q.action)))
        .chain(last.buttons.iter().map(|b| (&b.label, &b.action)))
        .find(|(l, _)| *l == label)
        .map(|(_, a)| a.clone())
        .unwrap_or_else(|| panic!("no choice {label:?} in {last:?}"));
    match action {
        Action::Postback(data) => data,
        other => panic!("{other:?}"),
    }
}

fn tap(data: String) -> Event {
    testing::postback("alice", data)
}

fn text(t: &str) -> Event {
    testing::text("alice", t)
}

#[tokio::test]
async fn a_booking_by_taps_and_typing_through_a_nested_dialog() {
    let bot = bot();
    assert_eq!(
        say(&bot, text("Book")).await,
        ["How many people?", "[1]", "[2]", "[3]", "[4]"]
    );
    let two = tap_data(&bot, "2");
    assert!(two.starts_with(DIALOG_POSTBACK_PREFIX), "{two}");
    assert_eq!(
        say(&bot, tap(two)).await,
        ["What time for 2?", "[7 pm]", "[8 pm]"]
    );
    // Typed, naming a choice by its label, leniently.
    assert_eq!(say(&bot, text(" 8 PM")).await, ["Your phone number?"]);
    assert_eq!(
        say(&bot, text("call me")).await,
        ["Digits only, at least 6.", "Your phone number?"]
    );
    assert_eq!(
        say(&bot, text("0612345")).await,
        ["We will call 0612345", "2 at 20:00, yes?", "[yes]", "[no]"]
    );
    assert_eq!(say(&bot, text("yes")).await, ["Booked: 2 at 20:00"]);
    // Over: "status" is the router's again, and so is "yes".
    assert_eq!(say(&bot, text("status")).await, ["no booking"]);
    assert_eq!(say(&bot, text("yes")).await, ["?"]);
    bot.shutdown().await;
}

#[tokio::test]
async fn refused_answers_help_cancel_and_routes_in_the_dialog() {
    let bot = bot();
    say(&bot, text("book")).await;
    assert_eq!(
        say(&bot, text("twenty")).await,
        [
            "A number from 1 to 8, please.",
            "How many people?",
            "[1]",
            "[2]",
            "[3]",
            "[4]"
        ]
    );
    // A typed number no choice names, accepted by the step's own check.
    assert_eq!(
        say(&bot, text("6")).await,
        ["What time for 6?", "[7 pm]", "[8 pm]"]
    );
    assert_eq!(say(&bot, text("Status")).await, ["at booking/time"]);
    assert_eq!(
        say(&bot, text("9 pm")).await,
        ["7 pm or 8 pm?", "What time for 6?", "[7 pm]", "[8 pm]"]
    );
    assert_eq!(
        say(&bot, text("help")).await,
        [
            "Answer the question, or say \"cancel\" to stop.",
            "What time for 6?",
            "[7 pm]",
            "[8 pm]"
        ]
    );
    assert_eq!(say(&bot, text("CANCEL")).await, ["Cancelled."]);
    assert_eq!(say(&bot, text("status")).await, ["no booking"]);
    // Cancelled from inside the nested dialog, and by a "no": both end everything.
    say(&bot, text("book")).await;
    say(&bot, text("1")).await;
    say(&bot, text("7 pm")).await;
    assert_eq!(say(&bot, text("cancel")).await, ["Cancelled."]);
    say(&bot, text("book")).await;
    assert_eq!(
        say(&bot, text("help")).await,
        [
            "Tap a number, or type one up to 8.",
            "How many people?",
            "[1]",
            "[2]",
            "[3]",
            "[4]"
        ]
    );
    bot.shutdown().await;
}

#[tokio::test]
async fn taps_on_questions_already_left_are_answered_sensibly() {
    let bot = bot();
    say(&bot, text("book")).await;
    let three = tap_data(&bot, "3");
    let four = tap_data(&bot, "4");
    say(&bot, tap(three.clone())).await;
    // The size question was answered: tapping it again changes nothing.
    assert_eq!(
        say(&bot, tap(four)).await,
        [
            "That question was already answered. Here is where we are:",
            "What time for 3?",
            "[7 pm]",
            "[8 pm]"
        ]
    );
    // The current question's taps still work after being asked again.
    let seven = tap_data(&bot, "7 pm");
    say(&bot, text("help")).await;
    assert_eq!(say(&bot, tap(seven)).await, ["Your phone number?"]);
    say(&bot, text("cancel")).await;
    assert_eq!(
        say(&bot, tap(three)).await,
        ["That conversation has ended."]
    );
    bot.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_dialog_left_open_times_out_and_the_message_goes_to_the_router() {
    let bot = bot();
    say(&bot, text("book")).await;
    say(&bot, text("2")).await;
    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(say(&bot, text("status")).await, ["at booking/time"]);
    tokio::time::advance(Duration::from_secs(601)).await;
    assert_eq!(
        say(&bot, text("status")).await,
        ["You took a while, so I stopped waiting for an answer."]
    );
    // The answer that came too late ended the dialog; the next message is the router's.
    assert_eq!(say(&bot, text("status")).await, ["no booking"]);
    bot.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_answer_retried_after_a_failed_reply_is_applied_once() {
    let bot = bot();
    say(&bot, text("book")).await;
    // The question after "2" fails to send once: the runtime retries the event.
    bot.outbound(&Platform::TEST).fail_next(1);
    assert_eq!(
        say(&bot, text("2")).await,
        ["What time for 2?", "[7 pm]", "[8 pm]"]
    );
    assert!(bot.dead_letters().is_empty());
    // Still at the time step, with the size answered once.
    assert_eq!(say(&bot, text("status")).await, ["at booking/time"]);
    bot.shutdown().await;
}

#[tokio::test]
async fn per_user_dialogs_keep_members_of_one_channel_apart() {
    let bot = TestBot::builder()
        .platforms([Platform::DISCORD])
        .handler(handler().per_user(true))
        .build()
        .unwrap();
    let from = |user: &str, t: &str| Event::text(Platform::DISCORD, "chan", t).with_sender(user);
    say(&bot, from("alice", "book")).await;
    // Bob is not in Alice's booking: his "2" goes to the router.
    assert_eq!(say(&bot, from("bob", "2")).await, ["?"]);
    assert_eq!(
        say(&bot, from("alice", "2")).await,
        ["What time for 2?", "[7 pm]", "[8 pm]"]
    );
    bot.shutdown().await;
}

#[tokio::test]
async fn mistakes_in_dialogs_are_config_errors_not_panics() {
    let empty = Dialogs::new(Router::new()).dialog(Dialog::<Booking>::new("empty"));
    assert!(empty.check().unwrap_err().to_string().contains("no steps"));
    let twice = Dialogs::new(Router::new())
        .dialog(booking())
        .dialog(booking());
    assert!(
        twice
            .check()
            .unwrap_err()
            .to_string()
            .contains("two dialogs")
    );
    let same_step = Dialog::<Booking>::new("d")
        .step(Step::new("a", |_: &Booking| "?".into()))
        .step(Step::new("a", |_: &Booking| "?".into()));
    let dialogs = Dialogs::new(Router::new()).dialog(same_step);
    assert!(
        dialogs
            .check()
            .unwrap_err()
            .to_string()
            .contains("two steps")
    );
    // Beginning a dialog nobody registered fails the event with the name.
    let bot = TestBot::builder()
        .limits(crate::Limits {
            retry: crate::RetryPolicy {
                max_attempts: 1,
                ..Default::default()
            },
            ..Default::default()
        })
        .handler(Dialogs::new(Router::new().text(begin("nope"))))
        .build()
        .unwrap();
    bot.send(text("x")).await.unwrap();
    bot.idle().await;
    let dead = bot.dead_letters();
    assert!(
        dead[0].error.contains("no dialog is named \"nope\""),
        "{dead:?}"
    );
    bot.shutdown().await;
}

#[tokio::test]
async fn in_step_routes_match_at_their_step_only() {
    let menu = |cx: Context, _e: Event| async move {
        let at = cx.dialog().expect("in a dialog");
        cx.reply(format!("the menu, at {}", at.step())).await
    };
    let router = Router::new()
        .text_match(TextMatch::LENIENT)
        .in_step("booking", "time", Router::new().text_exact("menu", menu))
        // Another dialog's step of the same name is not the booking's.
        .in_step("contact", "size", Router::new().text_exact("phone?", menu))
        .text_exact("book", begin("booking"))
        .fallback(|cx: Context, _e: Event| async move { cx.reply("?").await });
    let bot = TestBot::builder()
        .handler(Dialogs::new(router).dialog(booking()).dialog(contact()))
        .build()
        .unwrap();
    // Outside the dialog the route matches nothing.
    assert_eq!(say(&bot, text("menu")).await, ["?"]);
    say(&bot, text("book")).await;
    // At another step of the dialog "menu" is an answer to that step.
    assert_eq!(
        say(&bot, text("Menu")).await,
        [
            "A number from 1 to 8, please.",
            "How many people?",
            "[1]",
            "[2]",
            "[3]",
            "[4]"
        ]
    );
    assert_eq!(
        say(&bot, text("phone?")).await[0],
        "A number from 1 to 8, please."
    );
    say(&bot, text("2")).await;
    // At its step the route answers, compared as the outer router compares, and the step
    // is still asking.
    assert_eq!(say(&bot, text(" MENU")).await, ["the menu, at time"]);
    assert_eq!(say(&bot, text("8 pm")).await, ["Your phone number?"]);
    // In the nested dialog, the booking's step routes no longer match.
    assert_eq!(
        say(&bot, text("menu")).await,
        ["Digits only, at least 6.", "Your phone number?"]
    );
    bot.shutdown().await;
}
