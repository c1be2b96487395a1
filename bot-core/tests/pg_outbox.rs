//! The durable outbox on a real PostgreSQL: committed before `send` returns, sent once by the
//! senders of any process, keys that make a campaign's second run queue only what is new,
//! per-recipient order across two processes, retries, dead letters, cancel, capacity, and a bot
//! that runs its outbox's senders.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bot_core::outbound::{OutgoingMessage, Target};
use bot_core::outbox::{Outbox, OutboxBuilder, OutboxMessage};
use bot_core::pg::PgPool;
use bot_core::testing::RecordingOutbound;
use bot_core::{
    Bot, Context, Error, ErrorKind, Event, Ordering, Outbound, Overflow, Platform, RetryPolicy,
};
use support::pg::{eventually, fresh_pool};

const WAIT: Duration = Duration::from_secs(20);

/// A pool on a fresh schema for `test`, and an outbox builder on a fresh schema of its own.
async fn outbox_builder(test: &str) -> (PgPool, OutboxBuilder) {
    let pool = fresh_pool(test).await;
    let schema = format!("t_{test}_outbox");
    pool.get()
        .await
        .unwrap()
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    let builder = Outbox::builder(&pool)
        .schema(schema)
        .retry(quick_retries(5));
    (pool, builder)
}

fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

/// Rows in the outbox's queue, read on a connection of its own (what is committed).
async fn rows(pool: &PgPool, schema: &str) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(&format!("SELECT count(*) FROM {schema}.botrt_events"), &[])
        .await
        .unwrap()
        .get(0)
}

fn line(to: &str, text: &str) -> OutboxMessage {
    OutboxMessage::new(Platform::LINE, to, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_committed_when_send_returns_and_sent_once_with_its_key() {
    let (pool, builder) = outbox_builder("ob_commit").await;
    let outbox = builder.build().await.unwrap();
    let queued = outbox
        .send(line("U1", "your order shipped").key("order-42"))
        .await
        .unwrap();
    assert_eq!(queued.queued, 1);
    assert_eq!(rows(&pool, "t_ob_commit_outbox").await, 1, "committed");
    // The same key again is not queued again.
    let again = outbox
        .send(line("U1", "your order shipped").key("order-42"))
        .await
        .unwrap();
    assert_eq!((again.queued, again.duplicates), (0, 1));

    let recording = Arc::new(RecordingOutbound::new(Platform::LINE));
    let senders = outbox
        .senders([recording.clone() as Arc<dyn Outbound>])
        .unwrap();
    senders.start();
    let sent = tokio::time::timeout(WAIT, recording.wait_for(1))
        .await
        .unwrap();
    assert_eq!(sent[0].texts(), ["your order shipped"]);
    assert_eq!(sent[0].target.conversation.as_str(), "U1");
    // The send is named by its key, which clients derive their idempotency keys from.
    assert_eq!(
        sent[0].target.origin.as_ref().map(|id| id.as_str()),
        Some("outbox/order-42")
    );
    assert!(!sent[0].target.is_reply());
    eventually("the row to go", WAIT, || async {
        (rows(&pool, "t_ob_commit_outbox").await == 0).then_some(())
    })
    .await;
    // Senders outside a bot have telemetry of their own with the outbox's metrics in it.
    #[cfg(feature = "prometheus")]
    {
        let text = senders.telemetry().render_prometheus();
        assert!(
            text.lines().any(|l| l.starts_with("bot_outbox_messages")
                && l.contains("outcome=\"sent\"")
                && l.ends_with(" 1")),
            "{text}"
        );
    }
    senders.shutdown().await;
    assert_eq!(recording.len(), 1);
    let counts = outbox.counts();
    assert_eq!((counts.queued, counts.duplicates, counts.sent), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_run_again_queues_only_what_was_not_queued() {
    let (_pool, builder) = outbox_builder("ob_rerun").await;
    let outbox = builder.build().await.unwrap();
    let users: Vec<String> = (0..2_500).map(|n| format!("U{n}")).collect();
    // The first run stops after 1,200 recipients (a crash, a time-out).
    let first = outbox
        .send_many("spring", users[..1_200].iter().map(|u| line(u, "20 % off")))
        .await
        .unwrap();
    assert_eq!(first.queued, 1_200);
    let second = outbox
        .send_many("spring", users.iter().map(|u| line(u, "20 % off")))
        .await
        .unwrap();
    assert_eq!((second.queued, second.duplicates), (1_300, 1_200));
    assert_eq!(outbox.pending("spring").await.unwrap(), 2_500);

    let recording = Arc::new(RecordingOutbound::new(Platform::LINE));
    let senders = outbox
        .senders([recording.clone() as Arc<dyn Outbound>])
        .unwrap();
    senders.start();
    let sent = tokio::time::timeout(WAIT, recording.wait_for(2_500))
        .await
        .unwrap();
    let recipients: HashSet<&str> = sent
        .iter()
        .map(|s| s.target.conversation.as_str())
        .collect();
    assert_eq!(recipients.len(), 2_500, "each recipient once");
    eventually("the campaign to be done", WAIT, || async {
        (outbox.pending("spring").await.unwrap() == 0).then_some(())
    })
    .await;
    senders.shutdown().await;
    assert_eq!(recording.len(), 2_500, "nothing sent twice");
}

/// Records the order in which each recipient's sends start, across clients.
#[derive(Debug)]
struct OrderLog {
    platform: Platform,
    log: Arc<Mutex<HashMap<String, Vec<String>>>>,
    delay: Duration,
}

#[async_trait]
impl Outbound for OrderLog {
    fn platform(&self) -> Platform {
        self.platform.clone()
    }

    async fn send(&self, target: &Target, messages: Vec<OutgoingMessage>) -> Result<(), Error> {
        self.log
            .lock()
            .unwrap()
            .entry(target.conversation.as_str().to_owned())
            .or_default()
            .push(messages[0].text.clone().unwrap_or_default());
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_recipients_messages_go_in_order_across_two_processes() {
    let (_pool, builder) = outbox_builder("ob_order").await;
    let builder = builder.ordering(Ordering::PerConversation);
    // Two processes: two outboxes on one database, each with its senders.
    let a = builder.clone().build().await.unwrap();
    let b = builder.build().await.unwrap();
    let log = Arc::new(Mutex::new(HashMap::new()));
    let client = || {
        Arc::new(OrderLog {
            platform: Platform::LINE,
            log: log.clone(),
            delay: Duration::from_millis(2),
        }) as Arc<dyn Outbound>
    };
    const PER_USER: usize = 30;
    for n in 0..PER_USER {
        for user in ["U1", "U2", "U3", "U4"] {
            let outbox = if n % 2 == 0 { &a } else { &b };
            outbox.send(line(user, &format!("{n}"))).await.unwrap();
        }
    }
    let sent = || log.lock().unwrap().values().map(Vec::len).sum::<usize>();
    // Process A sends a part, then hands over to B mid-way (with sends in flight and claims
    // prefetched when it stops).
    let senders_a = a.senders([client()]).unwrap();
    senders_a.start();
    eventually("a part sent by A", WAIT, || async {
        (sent() >= 40).then_some(())
    })
    .await;
    senders_a.shutdown().await;
    let senders_b = b.senders([client()]).unwrap();
    senders_b.start();
    eventually("every message", WAIT, || async {
        (sent() == 4 * PER_USER).then_some(())
    })
    .await;
    senders_b.shutdown().await;
    let expected: Vec<String> = (0..PER_USER).map(|n| n.to_string()).collect();
    for (user, texts) in log.lock().unwrap().iter() {
        assert_eq!(
            texts, &expected,
            "{user}'s messages in the order queued, once each"
        );
    }
    let (ca, cb) = (a.counts(), b.counts());
    assert_eq!(ca.sent + cb.sent, 4 * PER_USER as u64, "{ca:?} {cb:?}");
    assert!(
        ca.sent >= 40 && cb.sent > 0,
        "both processes sent: {ca:?} {cb:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_is_retried_and_a_refused_one_is_a_dead_letter() {
    let (_pool, builder) = outbox_builder("ob_retry").await;
    let outbox = builder.build().await.unwrap();
    let refusing: bot_core::testing::Validator = Arc::new(|messages: &[OutgoingMessage]| {
        if messages[0].text.as_deref() == Some("refused") {
            return Err(Error::new(ErrorKind::Outbound, "400: invalid message").permanent());
        }
        Ok(())
    });
    let recording = Arc::new(RecordingOutbound::with_rules(Platform::LINE, refusing));
    recording.fail_next(2);
    outbox
        .send(line("U1", "hello").key("k-hello"))
        .await
        .unwrap();
    outbox
        .send(line("U2", "refused").key("k-refused"))
        .await
        .unwrap();
    // A message for a platform this process has no client of is a dead letter, said plainly.
    outbox
        .send(OutboxMessage::new(Platform::DISCORD, "C1", "hi").key("k-discord"))
        .await
        .unwrap();
    let senders = outbox
        .senders([recording.clone() as Arc<dyn Outbound>])
        .unwrap();
    senders.start();
    let sent = tokio::time::timeout(WAIT, recording.wait_for(1))
        .await
        .unwrap();
    assert_eq!(sent[0].texts(), ["hello"]);
    let mut dead = eventually("the dead letters", WAIT, || async {
        let dead = outbox.dead_letters(10).await.unwrap();
        (dead.len() == 2).then_some(dead)
    })
    .await;
    dead.sort_by(|a, b| a.event.id.as_str().cmp(b.event.id.as_str()));
    assert_eq!(dead[1].event.id.as_str(), "k-refused");
    assert_eq!(dead[1].attempts, 1, "a refusal is not retried");
    assert!(
        dead[1].error.contains("invalid message"),
        "{}",
        dead[1].error
    );
    assert_eq!(dead[0].event.id.as_str(), "k-discord");
    assert_eq!(dead[0].attempts, 1);
    assert!(
        dead[0].error.contains("no client for discord"),
        "{}",
        dead[0].error
    );
    senders.shutdown().await;
    let counts = outbox.counts();
    assert_eq!(recording.failures(), 2);
    assert_eq!(counts.sent, 1);
    // Two injected failures of "hello" (in whichever order the two were tried), the refusal,
    // and the message this process has no client for.
    assert_eq!(counts.failed, 4);
    assert_eq!(counts.dead, 2);
    // Stopping the senders leaves the outbox queueing.
    let later = outbox.send(line("U3", "later")).await.unwrap();
    assert_eq!(later.queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_dead_letter_is_sent() {
    let (_pool, builder) = outbox_builder("ob_redrive").await;
    let outbox = builder.retry(quick_retries(2)).build().await.unwrap();
    let recording = Arc::new(RecordingOutbound::new(Platform::LINE));
    recording.fail_next(2);
    outbox.send(line("U1", "again").key("k1")).await.unwrap();
    let senders = outbox
        .senders([recording.clone() as Arc<dyn Outbound>])
        .unwrap();
    senders.start();
    eventually("the dead letter", WAIT, || async {
        (outbox.dead_letters(10).await.unwrap().len() == 1).then_some(())
    })
    .await;
    assert_eq!(recording.len(), 0);
    assert_eq!(outbox.redrive(10).await.unwrap(), 1);
    let sent = tokio::time::timeout(WAIT, recording.wait_for(1))
        .await
        .unwrap();
    assert_eq!(sent[0].texts(), ["again"]);
    senders.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_removes_a_campaigns_waiting_messages_and_forgets_their_keys() {
    let (_pool, builder) = outbox_builder("ob_cancel").await;
    let outbox = builder.build().await.unwrap();
    let users: Vec<String> = (0..300).map(|n| format!("U{n}")).collect();
    outbox
        .send_many("c1", users.iter().map(|u| line(u, "one")))
        .await
        .unwrap();
    outbox
        .send_many("c2", users[..5].iter().map(|u| line(u, "two")))
        .await
        .unwrap();
    assert_eq!(outbox.cancel("c1").await.unwrap(), 300);
    assert_eq!(outbox.pending("c1").await.unwrap(), 0);
    assert_eq!(
        outbox.pending("c2").await.unwrap(),
        5,
        "other campaigns stay"
    );
    assert_eq!(outbox.cancel("c1").await.unwrap(), 0);
    // Cancelled keys are forgotten: running the campaign again queues it again.
    let again = outbox
        .send_many("c1", users.iter().map(|u| line(u, "one")))
        .await
        .unwrap();
    assert_eq!((again.queued, again.duplicates), (300, 0));
    assert_eq!(outbox.counts().cancelled, 300);
    let stats = outbox.stats().await.unwrap();
    assert_eq!(stats.queued(), 305);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_refuses_or_sheds_and_counts_exactly() {
    let (_pool, builder) = outbox_builder("ob_full").await;
    let outbox = builder
        .clone()
        .capacity(10)
        .overflow(Overflow::Reject)
        .build()
        .await
        .unwrap();
    let users: Vec<String> = (0..10).map(|n| format!("U{n}")).collect();
    outbox
        .send_many("fill", users.iter().map(|u| line(u, "x")))
        .await
        .unwrap();
    let refused = outbox.send(line("U99", "one too many")).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::QueueFull);
    assert_eq!(outbox.counts().rejected, 1);
    assert_eq!(
        outbox.stats().await.unwrap().queued(),
        10,
        "nothing half-queued"
    );

    // Shedding the newest: what does not fit is dropped and counted, the rest queued.
    let (_pool, builder) = outbox_builder("ob_shed").await;
    let shedding = builder
        .capacity(10)
        .overflow(Overflow::DropNewest)
        .build()
        .await
        .unwrap();
    let users: Vec<String> = (0..15).map(|n| format!("U{n}")).collect();
    let report = shedding
        .send_many("shed", users.iter().map(|u| line(u, "x")))
        .await
        .unwrap();
    assert_eq!((report.queued, report.dropped_newest), (10, 5));
    let counts = shedding.counts();
    assert_eq!((counts.queued, counts.dropped_newest), (10, 5));
    assert_eq!(shedding.pending("shed").await.unwrap(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_with_an_outbox_runs_its_senders_and_gives_handlers_the_outbox() {
    let (_pool, builder) = outbox_builder("ob_bot").await;
    let outbox = builder.build().await.unwrap();
    let recording = Arc::new(RecordingOutbound::new(Platform::TEST));
    // The handler queues a follow-up through the outbox it finds in the bot's state.
    let handler = |cx: Context, event: Event| async move {
        let outbox = cx
            .state::<Outbox>()
            .expect("the bot hands handlers its outbox");
        outbox
            .send(
                OutboxMessage::new(Platform::TEST, event.conversation.clone(), "follow-up")
                    .key(format!("follow-up/{}", event.id)),
            )
            .await?;
        Ok::<_, Error>(())
    };
    let bot = Bot::builder()
        .outbound(recording.clone())
        .outbox(outbox)
        .handler(handler)
        .build()
        .unwrap();
    bot.start();
    bot.send(OutboxMessage::new(Platform::TEST, "C1", "proactive"))
        .await
        .unwrap();
    let again = bot
        .send_many(
            "welcome",
            [OutboxMessage::new(Platform::TEST, "C3", "welcome")],
        )
        .await
        .unwrap();
    assert_eq!(again.queued, 1);
    bot.ingress()
        .submit(vec![support::text_event("C2", "e1")])
        .await
        .unwrap();
    let sent = tokio::time::timeout(WAIT, recording.wait_for(3))
        .await
        .unwrap();
    let mut texts: Vec<(&str, &str)> = sent
        .iter()
        .map(|s| (s.target.conversation.as_str(), s.texts()[0]))
        .collect();
    texts.sort_unstable();
    assert_eq!(
        texts,
        [("C1", "proactive"), ("C2", "follow-up"), ("C3", "welcome")]
    );
    bot.shutdown().await;
    // A bot without an outbox says so.
    let plain = Bot::builder()
        .handler(|_cx: Context, _e: Event| async { Ok::<_, Error>(()) })
        .build()
        .unwrap();
    let err = plain
        .send(OutboxMessage::new(Platform::TEST, "C1", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

/// Cancelling while senders run: every message is either sent or cancelled, never both — the
/// ones a sender has claimed go out and are not counted cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_sending_never_counts_a_sent_message_cancelled() {
    let (_pool, builder) = outbox_builder("ob_cancel_live").await;
    let outbox = builder.max_in_flight(20).build().await.unwrap();
    let users: Vec<String> = (0..400).map(|n| format!("U{n}")).collect();
    outbox
        .send_many("live", users.iter().map(|u| line(u, "x")))
        .await
        .unwrap();
    let log = Arc::new(Mutex::new(HashMap::new()));
    let client = Arc::new(OrderLog {
        platform: Platform::LINE,
        log: log.clone(),
        delay: Duration::from_millis(20),
    }) as Arc<dyn Outbound>;
    let senders = outbox.senders([client]).unwrap();
    senders.start();
    let sent = || log.lock().unwrap().values().map(Vec::len).sum::<usize>();
    eventually("some sent", WAIT, || async { (sent() >= 40).then_some(()) }).await;
    let cancelled = outbox.cancel("live").await.unwrap();
    eventually("nothing left", WAIT, || async {
        (outbox.pending("live").await.unwrap() == 0).then_some(())
    })
    .await;
    senders.shutdown().await;
    let sent = sent();
    assert!(cancelled > 0, "the cancel came before the end");
    assert_eq!(
        sent as u64 + cancelled,
        400,
        "{sent} sent + {cancelled} cancelled: each message once"
    );
    assert_eq!(outbox.counts().sent, sent as u64);
}
