use std::time::Duration;

use super::*;
use crate::context::Context;
use crate::handler::{HandlerExt, Permanent};
use crate::limits::RetryPolicy;
use crate::outbound::QuickReply;
use crate::router::Router;

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    if let Some(text) = event.text_content() {
        cx.reply(text).await?;
    }
    Ok(())
}

#[tokio::test]
async fn sends_are_numbered_per_event_and_the_same_again_on_a_retry() {
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = attempts.clone();
    let handler = move |cx: Context, _event: Event| {
        let seen = seen.clone();
        async move {
            cx.reply("one").await?;
            cx.send("elsewhere", "two").await?;
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(Error::new(ErrorKind::Outbound, "fail the first attempt"));
            }
            Ok(())
        }
    };
    let bot = TestBot::builder()
        .handler(handler)
        .limits(quick_retries(2))
        .build()
        .unwrap();
    bot.send(text("c", "go")).await.unwrap();
    bot.idle().await;
    let sent = bot.sent();
    let indices: Vec<u32> = sent.iter().map(|s| s.target.send_index).collect();
    assert_eq!(indices, [0, 1, 0, 1]);
    // A send to another conversation carries the event it was made for, as a reply does.
    assert_eq!(sent[1].target.conversation.as_str(), "elsewhere");
    assert!(!sent[1].target.is_reply());
    assert_eq!(sent[1].target.origin, sent[0].target.origin);
    assert!(sent[0].target.origin.is_some());
    bot.shutdown().await;
}

#[tokio::test]
async fn a_send_is_numbered_when_it_is_made_not_when_it_first_runs() {
    let handler = |cx: Context, _event: Event| async move {
        let first = cx.reply("first");
        let second = cx.send("elsewhere", "second");
        let third = cx.reply_all(vec!["third".into()]);
        // Run in the other order: the numbers follow the code, not the polling.
        third.await?;
        second.await?;
        first.await?;
        Ok::<(), Error>(())
    };
    let bot = TestBot::builder().handler(handler).build().unwrap();
    bot.send(text("c", "go")).await.unwrap();
    bot.idle().await;
    let numbered: Vec<(String, u32)> = bot
        .sent()
        .iter()
        .map(|s| (s.texts().concat(), s.target.send_index))
        .collect();
    assert_eq!(
        numbered,
        [
            ("third".to_owned(), 2),
            ("second".to_owned(), 1),
            ("first".to_owned(), 0)
        ]
    );
    bot.shutdown().await;
}

/// Limits with quick retries, for tests of failures.
fn quick_retries(max_attempts: u32) -> Limits {
    Limits {
        retry: RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        },
        ..Limits::default()
    }
}

#[tokio::test]
async fn echo_replies_to_each_event_in_order() {
    let bot = TestBot::builder().handler(echo).build().unwrap();
    let events = vec![
        text("alice", "one"),
        text("alice", "two"),
        text("alice", "three"),
    ];
    for event in &events {
        let report = bot.send(event.clone()).await.unwrap();
        assert_eq!(report.accepted, 1);
    }
    let sent = bot.outbound(&Platform::TEST).wait_for(3).await;
    assert_eq!(sent.len(), 3);
    for (sent, event) in sent.iter().zip(&events) {
        assert_eq!(sent.platform, Platform::TEST);
        assert_eq!(sent.texts(), [event.text_content().unwrap()]);
        assert_eq!(sent.target.conversation.as_str(), "alice");
        assert_eq!(sent.target.in_reply_to.as_ref(), Some(&event.id));
    }
    assert_eq!(bot.texts(), ["one", "two", "three"]);
    bot.idle().await;
    let report = bot.shutdown().await;
    assert_eq!(report.not_run(), 0);
}

#[tokio::test]
async fn wait_for_wakes_when_the_count_is_reached() {
    let recorder = RecordingOutbound::new(Platform::LINE);
    assert!(recorder.wait_for(0).await.is_empty());
    let target = Target::conversation("c");
    recorder.fail_next(1);
    let sender = async {
        for text in ["lost", "a", "b", "c"] {
            tokio::task::yield_now().await;
            let _ = recorder
                .send(&target, vec![OutgoingMessage::text(text)])
                .await;
        }
    };
    let (sent, ()) = tokio::join!(recorder.wait_for(2), sender);
    assert!(sent.len() >= 2, "{sent:?}");
    assert_eq!(sent[0].texts(), ["a"]);
    assert_eq!(sent[1].texts(), ["b"]);
    assert_eq!(recorder.texts(), ["a", "b", "c"]);
    assert_eq!(recorder.failures(), 1);
}

#[tokio::test(start_paused = true)]
async fn injected_failures_are_retried() {
    let bot = TestBot::builder()
        .handler(echo)
        .limits(quick_retries(5))
        .build()
        .unwrap();
    let recorder = bot.outbound(&Platform::TEST);
    recorder.fail_next(2);
    bot.send(text("bob", "hi")).await.unwrap();
    bot.idle().await;
    assert_eq!(recorder.failures(), 2);
    assert_eq!(recorder.texts(), ["hi"]);
    assert!(bot.dead_letters().is_empty());
}

#[tokio::test(start_paused = true)]
async fn idle_waits_for_silent_handlers_and_dead_letters() {
    async fn picky(_cx: Context, event: Event) -> Result<(), Permanent> {
        match event.text_content() {
            Some("bad") => Err(Permanent::new("cannot handle bad")),
            _ => Ok(()),
        }
    }
    let hooked = Arc::new(AtomicU64::new(0));
    let counter = hooked.clone();
    let bot = TestBot::builder()
        .handler(picky)
        .on_dead_letter(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    bot.send_all(vec![text("a", "fine"), text("b", "bad"), text("c", "fine")])
        .await
        .unwrap();
    bot.idle().await;
    let dead = bot.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event.text_content(), Some("bad"));
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(hooked.load(Ordering::Relaxed), 1);
    assert!(bot.sent().is_empty());
}

#[tokio::test]
async fn sends_are_recorded_per_platform_in_call_order() {
    async fn relay(cx: Context, event: Event) -> Result<(), Error> {
        cx.typing().await?;
        cx.reply("ack").await?;
        cx.send_on(Platform::LINE, "ops", format!("from {}", event.platform))
            .await?;
        cx.reply_all(vec![
            OutgoingMessage::image("https://example.invalid/a.png"),
            OutgoingMessage::text("pick").quick_reply(QuickReply::message("yes")),
        ])
        .await
    }
    let bot = TestBot::builder()
        .handler(relay)
        .platforms([Platform::TEST, Platform::LINE, Platform::TEST])
        .build()
        .unwrap();
    bot.send(text("u", "x")).await.unwrap();
    let sent = bot.wait_for(3).await;
    let platforms: Vec<_> = sent.iter().map(|s| s.platform.as_str()).collect();
    assert_eq!(platforms, ["test", "line", "test"]);
    assert_eq!(bot.texts(), ["ack", "from test", "pick"]);
    assert!(!sent[1].target.is_reply());
    assert_eq!(sent[1].target.conversation.as_str(), "ops");
    assert_eq!(sent[2].messages.len(), 2);
    assert_eq!(bot.outbound(&Platform::LINE).len(), 1);
    assert_eq!(
        bot.outbound(&Platform::TEST).typing_indicators(),
        [ConversationId::from("u")]
    );
    bot.outbound(&Platform::TEST).clear();
    assert!(bot.outbound(&Platform::TEST).is_empty());
}

#[tokio::test]
#[should_panic(expected = "no recording outbound for platform discord")]
async fn outbound_of_an_unknown_platform_panics() {
    let bot = TestBot::builder().handler(echo).build().unwrap();
    let _ = bot.outbound(&Platform::DISCORD);
}

#[tokio::test]
async fn builder_requires_a_handler() {
    let err = TestBot::builder().build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn event_constructors_route_like_platform_events() {
    async fn reply(cx: Context, event: Event) -> Result<(), Error> {
        let sender = event.sender.as_ref().map(|s| s.to_string());
        cx.reply(format!(
            "{} {}",
            event.kind.name(),
            sender.unwrap_or_default()
        ))
        .await
    }
    let router = Router::new()
        .command("start", reply)
        .postback("menu", reply)
        .text(reply.with_timeout(Duration::from_secs(1)));
    let bot = TestBot::builder().handler(router).build().unwrap();
    bot.send(command("u1", "start")).await.unwrap();
    bot.send(postback("u2", "menu")).await.unwrap();
    bot.send(text("u3", "hi")).await.unwrap();
    bot.idle().await;
    let mut texts = bot.texts();
    texts.sort();
    assert_eq!(texts, ["command u1", "message u3", "postback u2"]);
    let a = text("c", "x");
    let b = text("c", "x");
    assert_ne!(a.id, b.id);
}

#[test]
fn public_types_are_send_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<RecordingOutbound>();
    assert_send_sync::<TestBot>();
    assert_send_sync::<Sent>();
}

#[tokio::test]
async fn the_first_attempt_is_handed_the_pushed_event_itself_a_retry_an_equal_copy() {
    // Each attempt's event, kept; the first attempt fails so that a retry runs too.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Event>::new()));
    let record = seen.clone();
    let handler = move |_cx: Context, event: Event| {
        let record = record.clone();
        async move {
            let mut seen = record.lock().unwrap();
            seen.push(event);
            if seen.len() == 1 {
                return Err(Error::new(ErrorKind::Outbound, "the first attempt fails"));
            }
            Ok(())
        }
    };
    let bot = TestBot::builder()
        .handler(handler)
        .limits(quick_retries(2))
        .build()
        .unwrap();
    let event = text("c", "go");
    bot.send(event.clone()).await.unwrap();
    bot.idle().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    // The queue, the supervisor and the first attempt moved and cloned the handle only: its
    // handler saw the block of data that was pushed, not a copy of it. The event kept for the
    // retry was copied out of its request (so that it keeps no body or sibling alive): the
    // second attempt sees an equal copy.
    assert!(
        seen[0].ptr_eq(&event),
        "a copy reached the handler: {seen:?}"
    );
    assert!(!seen[1].ptr_eq(&event));
    assert_eq!(seen[1], event);
    bot.shutdown().await;
}
