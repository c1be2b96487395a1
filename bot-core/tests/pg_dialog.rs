//! Dialogs across two processes: two bots on one `PgQueue` and one `PgStateStore` answering
//! the same conversations' dialogs.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bot_core::dialog::{self, Answer, Dialog, Dialogs, Next, Step};
use bot_core::pg::{PgQueue, PgStateStore};
use bot_core::testing::RecordingOutbound;
use bot_core::{Bot, Context, Event, Limits, Ordering, Platform, Router};
use serde::{Deserialize, Serialize};
use support::pg::{eventually, fresh_pool, queue_builder};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Answers {
    given: Vec<String>,
    sum: u64,
}

/// Three questions, each taking any text; done, it says every answer in the order given.
fn three_questions() -> Dialog<Answers> {
    let step = |name: &str| {
        Step::new(name, |_: &Answers| "?".into()).accept(|a: &mut Answers, answer: &Answer| {
            a.given.push(answer.text().to_owned());
            Ok(Next::Continue)
        })
    };
    Dialog::<Answers>::new("three")
        .step(step("a"))
        .step(step("b"))
        .step(step("c"))
        .on_done(|cx: Context, a: Answers| async move {
            cx.reply(format!("done {}", a.given.join(","))).await
        })
}

/// One question asked again and again, adding each answer up: order does not matter, every
/// answer must count once.
fn tally() -> Dialog<Answers> {
    Dialog::<Answers>::new("tally")
        .timeout(Duration::from_secs(600))
        .step(
            Step::new("add", |_: &Answers| "more?".into()).accept(|a: &mut Answers, answer| {
                a.sum += answer
                    .text()
                    .parse::<u64>()
                    .map_err(|_| dialog::Retry::new("a number"))?;
                a.given.push(answer.text().to_owned());
                Ok(Next::Goto("add".into()))
            }),
        )
}

fn handler() -> Dialogs {
    let total = |cx: Context, _e: Event| async move {
        let sum = cx.dialog().map(|at| at.state::<Answers>()).transpose()?;
        let (sum, count) = sum.map_or((0, 0), |a| (a.sum, a.given.len()));
        cx.reply(format!("total {sum} of {count}")).await
    };
    let router = Router::new()
        .in_dialog("tally", Router::new().text_exact("total", total))
        .text_exact("three", dialog::begin("three"))
        .text_exact("tally", dialog::begin("tally"));
    Dialogs::new(router)
        .dialog(three_questions())
        .dialog(tally())
}

struct Process {
    bot: Bot,
    queue: Arc<PgQueue>,
    outbound: Arc<RecordingOutbound>,
}

fn process(pool: &bot_core::pg::PgPool, ordering: Ordering) -> Process {
    let queue = Arc::new(queue_builder(pool).ordering(ordering).build().unwrap());
    let outbound = Arc::new(RecordingOutbound::new(Platform::TEST));
    let bot = Bot::builder()
        .adapter(support::JsonAdapter)
        .limits(Limits {
            max_in_flight: 16,
            ordering,
            retry: bot_core::RetryPolicy {
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(50),
                max_attempts: 50,
                ..Default::default()
            },
            ..Limits::default()
        })
        .queue(queue.clone())
        .state_store(Arc::new(PgStateStore::new(pool)))
        .outbound(outbound.clone())
        .handler(handler())
        .build()
        .unwrap();
    bot.start();
    Process {
        bot,
        queue,
        outbound,
    }
}

fn said(processes: &[&Process]) -> BTreeMap<String, Vec<String>> {
    let mut by_conversation: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in processes {
        for sent in p.outbound.sent() {
            let texts = sent.texts().into_iter().map(str::to_owned);
            (by_conversation.entry(sent.target.conversation.to_string()))
                .or_default()
                .extend(texts);
        }
    }
    by_conversation
}

fn message(conversation: &str, id: String, text: &str) -> Event {
    Event::text(Platform::TEST, conversation, text)
        .with_id(id)
        .with_sender(conversation)
}

/// With the durable queue's per-conversation order, each answer reaches the step it was
/// given for, whichever process runs it: no step lost, none answered twice or out of turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_walk_one_conversations_dialogs_step_by_step() {
    const CONVERSATIONS: usize = 20;
    const ROUNDS: usize = 5;
    let pool = fresh_pool("dlg_two_processes").await;
    let a = process(&pool, Ordering::PerConversation);
    let b = process(&pool, Ordering::PerConversation);
    for round in 0..ROUNDS {
        for c in 0..CONVERSATIONS {
            let conv = format!("c{c}");
            let texts = [
                "three".to_owned(),
                format!("{round}a"),
                format!("{round}b"),
                format!("{round}c"),
            ];
            for (i, text) in texts.iter().enumerate() {
                // Each message through one process or the other: one conversation, two processes.
                let ingress = if (c + i + round) % 2 == 0 { &a } else { &b };
                let id = format!("{conv}-{round}-{i}");
                ingress
                    .bot
                    .ingress()
                    .submit(vec![message(&conv, id, text)])
                    .await
                    .unwrap();
            }
        }
    }
    let expected_sends = CONVERSATIONS * ROUNDS * 4;
    eventually("every answer handled", Duration::from_secs(60), || async {
        (a.outbound.len() + b.outbound.len() >= expected_sends).then_some(())
    })
    .await;
    // (Not `Bot::idle`: it counts this process's events, and the other one handles half.)
    let said = said(&[&a, &b]);
    assert_eq!(said.len(), CONVERSATIONS);
    for (conv, texts) in &said {
        let mut done: Vec<&String> = texts.iter().filter(|t| t.starts_with("done")).collect();
        done.sort();
        let expected: Vec<String> = (0..ROUNDS)
            .map(|r| format!("done {r}a,{r}b,{r}c"))
            .collect();
        assert_eq!(
            done,
            expected.iter().collect::<Vec<_>>(),
            "{conv}: {texts:?}"
        );
        assert_eq!(texts.len(), ROUNDS * 4, "{conv}: {texts:?}");
    }
    assert!(a.bot.dead_letters(10).await.unwrap().is_empty());
    assert!(
        a.queue.counters().acked > 0 && b.queue.counters().acked > 0,
        "both processes answered"
    );
    for p in [a, b] {
        p.bot.shutdown().await;
        p.queue.shutdown().await;
    }
}

/// Unordered, one conversation's answers run at once in both processes: compare-and-swap on
/// the dialog's record makes every answer count exactly once (a lost race is retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_racing_in_two_processes_each_count_once() {
    const ANSWERS: u64 = 60;
    let pool = fresh_pool("dlg_race").await;
    let a = process(&pool, Ordering::Unordered);
    let b = process(&pool, Ordering::Unordered);
    a.bot
        .ingress()
        .submit(vec![message("c", "start".into(), "tally")])
        .await
        .unwrap();
    eventually("the tally to begin", Duration::from_secs(30), || async {
        (a.outbound.len() + b.outbound.len() >= 1).then_some(())
    })
    .await;
    for n in 1..=ANSWERS {
        let ingress = if n % 2 == 0 { &a } else { &b };
        let event = message("c", format!("n{n}"), &n.to_string());
        ingress.bot.ingress().submit(vec![event]).await.unwrap();
    }
    eventually("every answer handled", Duration::from_secs(60), || async {
        (a.outbound.len() + b.outbound.len() > ANSWERS as usize).then_some(())
    })
    .await;
    // (Not `Bot::idle`: it counts this process's events, and the other one handles half.)
    a.bot
        .ingress()
        .submit(vec![message("c", "total".into(), "total")])
        .await
        .unwrap();
    let total = format!("total {} of {ANSWERS}", ANSWERS * (ANSWERS + 1) / 2);
    eventually("the total", Duration::from_secs(30), || async {
        said(&[&a, &b])["c"].contains(&total).then_some(())
    })
    .await;
    assert!(a.bot.dead_letters(10).await.unwrap().is_empty());
    // The races happened, and were lost and retried rather than overwritten.
    let retried = a.queue.counters().nacked + b.queue.counters().nacked;
    assert!(retried > 0, "no answer lost a race: the test raced nothing");
    for p in [a, b] {
        p.bot.shutdown().await;
        p.queue.shutdown().await;
    }
}
