//! Every path through the booking, on LINE, Messenger, Discord and the console, through
//! `TestBot` playing each platform by its rules (its client's limits and refusals); each path
//! walked through both versions of the booking, with dialogs and by hand, which answer alike.

use std::sync::Arc;
use std::time::Duration;

use bot_core::Platform;
use bot_core::testing::{self, TestBot};

/// A user's chat with the bot on one platform.
struct Chat {
    version: Version,
    bot: Arc<TestBot>,
    platform: Platform,
    user: String,
    conversation: String,
}

/// The two versions of the booking.
#[derive(Debug, Clone, Copy)]
enum Version {
    Dialogs,
    Handmade,
}

fn builder_of(version: Version) -> testing::TestBotBuilder {
    match version {
        Version::Dialogs => TestBot::builder().handler(booking_dialog::handler()),
        Version::Handmade => TestBot::builder().handler(booking_dialog::handmade::handler()),
    }
}

// ANCHOR: rules
fn bot_on(version: Version, platform: &Platform) -> TestBot {
    let builder = builder_of(version);
    let builder = match platform.as_str() {
        "line" => builder.platform_rules(Platform::LINE, bot_line::client::validate),
        "messenger" => builder.platform_rules(Platform::MESSENGER, bot_messenger::client::validate),
        "discord" => builder.platform_rules(Platform::DISCORD, bot_discord::client::validate),
        _ => builder.platforms([platform.clone()]),
    };
    builder.build().unwrap()
}
// ANCHOR_END: rules

/// Each version on each platform.
fn platforms() -> impl Iterator<Item = (Version, Platform)> {
    let platforms = [
        Platform::LINE,
        Platform::MESSENGER,
        Platform::DISCORD,
        Platform::CONSOLE,
    ];
    [Version::Dialogs, Version::Handmade]
        .into_iter()
        .flat_map(move |version| platforms.clone().map(|platform| (version, platform)))
}

impl Chat {
    fn new((version, platform): (Version, Platform)) -> Self {
        let bot = Arc::new(bot_on(version, &platform));
        Self::in_channel(&bot, version, platform, "u1", "u1")
    }

    fn in_channel(
        bot: &Arc<TestBot>,
        version: Version,
        platform: Platform,
        user: &str,
        conversation: &str,
    ) -> Self {
        Self {
            version,
            bot: bot.clone(),
            platform,
            user: user.to_owned(),
            conversation: conversation.to_owned(),
        }
    }

    /// Sends `event` from this user and returns what the bot said, choices as `[label]`.
    async fn send(&self, event: bot_core::Event) -> Vec<String> {
        let before = self.bot.sent().len();
        self.bot
            .send(event.with_sender(self.user.as_str()))
            .await
            .unwrap();
        self.bot.idle().await;
        let dead = self.bot.dead_letters();
        assert!(
            dead.is_empty(),
            "{:?} on {}: {dead:?}",
            self.version,
            self.platform
        );
        (self.bot.sent()[before..].iter())
            .flat_map(|sent| sent.messages.iter())
            .flat_map(|m| {
                let choices = (m.quick_replies.iter().map(|q| &q.label))
                    .chain(m.buttons.iter().map(|b| &b.label))
                    .map(|label| format!("[{label}]"));
                m.text.clone().into_iter().chain(choices)
            })
            .collect()
    }

    async fn say(&self, text: &str) -> Vec<String> {
        let event = testing::text_on(self.platform.clone(), self.conversation.as_str(), text);
        self.send(event).await
    }

    /// Taps the quick reply or presses the button labelled `label` of the last message that
    /// offered choices.
    async fn tap(&self, label: &str) -> Vec<String> {
        let sent = self.bot.sent();
        let messages = sent.iter().rev().flat_map(|s| s.messages.iter().rev());
        let last = (messages.clone())
            .find(|m| !m.quick_replies.is_empty() || !m.buttons.is_empty())
            .expect("a message with choices")
            .clone();
        let conversation = self.conversation.as_str();
        let event = match last.quick_replies.iter().find(|q| q.label == label) {
            Some(q) => testing::quick_reply_tap_on(self.platform.clone(), conversation, q),
            None => (last.buttons.iter().find(|b| b.label == label))
                .and_then(|b| testing::button_press_on(self.platform.clone(), conversation, b)),
        };
        self.send(event.unwrap_or_else(|| panic!("no {label:?} in {last:?}")))
            .await
    }
}

const SIZE: [&str; 5] = ["How many people?", "[1]", "[2]", "[3]", "[4]"];

fn time(size: u32) -> Vec<String> {
    let mut texts = vec![format!("A table for {size}: what time?")];
    texts.extend(["[6 pm]", "[7 pm]", "[8 pm]"].map(str::to_owned));
    texts
}

fn confirm(size: u32, at: &str) -> Vec<String> {
    vec![
        format!("{size} people at {at}. Shall I book it?"),
        "[yes]".into(),
        "[no]".into(),
    ]
}

#[tokio::test]
async fn booking_by_taps_on_every_platform() {
    for platform in platforms() {
        let chat = Chat::new(platform);
        assert_eq!(chat.say("book").await, SIZE);
        assert_eq!(chat.tap("2").await, time(2));
        assert_eq!(chat.tap("7 pm").await, confirm(2, "19:00"));
        assert_eq!(
            chat.tap("yes").await,
            ["Booked: 2 people at 19:00. See you!"]
        );
        assert_eq!(
            chat.say("status").await,
            ["No booking in progress. Say \"book\" to start one."]
        );
        chat.bot.shutdown().await;
    }
}

#[tokio::test]
async fn booking_by_typing_as_phones_type_on_every_platform() {
    for platform in platforms() {
        let chat = Chat::new(platform);
        assert_eq!(chat.say("Book ").await, SIZE);
        // Six is no quick reply, but the step takes it.
        assert_eq!(chat.say("6").await, time(6));
        assert_eq!(chat.say("8 PM").await, confirm(6, "20:00"));
        assert_eq!(
            chat.say("Yes").await,
            ["Booked: 6 people at 20:00. See you!"]
        );
        chat.bot.shutdown().await;
    }
}

#[tokio::test]
async fn wrong_answers_are_asked_again_with_the_reason() {
    for platform in platforms() {
        let chat = Chat::new(platform);
        chat.say("book").await;
        let again = |why: &str, question: &[String]| {
            let mut texts = vec![why.to_owned()];
            texts.extend_from_slice(question);
            texts
        };
        let size: Vec<String> = SIZE.map(str::to_owned).to_vec();
        assert_eq!(
            chat.say("twenty").await,
            again("A number from 1 to 8, please.", &size)
        );
        assert_eq!(
            chat.say("9").await,
            again("A number from 1 to 8, please.", &size)
        );
        chat.say("4").await;
        assert_eq!(chat.say("noon").await, again("6, 7 or 8 pm?", &time(4)));
        chat.say("6 pm").await;
        assert_eq!(
            chat.say("maybe").await,
            again("Yes or no?", &confirm(4, "18:00"))
        );
        assert_eq!(
            chat.say("yes").await,
            ["Booked: 4 people at 18:00. See you!"]
        );
        chat.bot.shutdown().await;
    }
}

#[tokio::test]
async fn cancel_help_and_status_work_at_every_step() {
    for platform in platforms() {
        let chat = Chat::new(platform);
        // Cancelled at each step, and by a "no".
        for answers in [&[][..], &["2"], &["2", "7 pm"]] {
            chat.say("book").await;
            for answer in answers {
                chat.say(answer).await;
            }
            assert_eq!(chat.say("Cancel").await, ["Cancelled."]);
            assert_eq!(
                chat.say("status").await,
                ["No booking in progress. Say \"book\" to start one."]
            );
        }
        chat.say("book").await;
        assert_eq!(
            chat.say("status").await,
            ["Booking: waiting for the party size."]
        );
        let mut help = vec!["Tap a number, or type one from 1 to 8.".to_owned()];
        help.extend(SIZE.map(str::to_owned));
        assert_eq!(chat.say("help").await, help);
        chat.say("3").await;
        assert_eq!(
            chat.say("status").await,
            ["Booking for 3: waiting for the time."]
        );
        let mut help = vec!["Answer the question, or say \"cancel\" to stop.".to_owned()];
        help.extend(time(3));
        assert_eq!(chat.say("help").await, help);
        chat.say("8 pm").await;
        assert_eq!(
            chat.say("status").await,
            ["Booking for 3 at 20:00: waiting for your yes."]
        );
        assert_eq!(chat.tap("no").await, ["Cancelled."]);
        assert_eq!(
            chat.say("hi").await,
            ["Hello! Say \"book\" to book a table."]
        );
        chat.bot.shutdown().await;
    }
}

#[tokio::test]
async fn taps_on_a_question_already_answered_change_nothing() {
    for platform in platforms() {
        let chat = Chat::new(platform);
        chat.say("book").await;
        let sent = chat.bot.sent();
        let size_question = sent.last().unwrap().messages[0].clone();
        chat.tap("2").await;
        // The user scrolls up and taps "4" under the first question.
        let four = size_question
            .quick_replies
            .iter()
            .find(|q| q.label == "4")
            .unwrap();
        let late = testing::quick_reply_tap_on(chat.platform.clone(), "u1", four).unwrap();
        let mut expected =
            vec!["That question was already answered. Here is where we are:".to_owned()];
        expected.extend(time(2));
        assert_eq!(chat.send(late).await, expected);
        chat.tap("6 pm").await;
        chat.tap("yes").await;
        // After the booking, the old buttons say so.
        let late = testing::quick_reply_tap_on(chat.platform.clone(), "u1", four).unwrap();
        assert_eq!(chat.send(late).await, ["That conversation has ended."]);
        chat.bot.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_booking_left_half_way_times_out() {
    for platform in platforms() {
        let chat = Chat::new(platform);
        chat.say("book").await;
        chat.say("2").await;
        tokio::time::advance(Duration::from_secs(31 * 60)).await;
        assert_eq!(
            chat.say("status").await,
            ["You took a while, so I stopped waiting for an answer."]
        );
        // The next message goes to the router.
        assert_eq!(
            chat.say("status").await,
            ["No booking in progress. Say \"book\" to start one."]
        );
        chat.bot.shutdown().await;
    }
}

#[tokio::test]
async fn two_members_of_one_discord_channel_book_at_once() {
    for version in [Version::Dialogs, Version::Handmade] {
        let bot = Arc::new(bot_on(version, &Platform::DISCORD));
        let alice = Chat::in_channel(&bot, version, Platform::DISCORD, "alice", "channel");
        let bob = Chat::in_channel(&bot, version, Platform::DISCORD, "bob", "channel");
        alice.say("book").await;
        alice.say("2").await;
        // Bob's answers go to his own booking, not Alice's.
        assert_eq!(bob.say("book").await, SIZE);
        assert_eq!(bob.say("3").await, time(3));
        assert_eq!(alice.say("8 pm").await, confirm(2, "20:00"));
        assert_eq!(
            bob.say("status").await,
            ["Booking for 3: waiting for the time."]
        );
        bot.shutdown().await;
    }
}
