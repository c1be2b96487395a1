//! Dialogs across processes: bots on one PostgreSQL queue and state store answering the same
//! conversations' dialogs; as two OS processes (this test binary run again twice, as children
//! executing the ignored [`child_answers_dialogs`] entry, each with a pool of its own), and as
//! two bots in this process racing on one conversation.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bot_core::dialog::{self, Answer, Dialog, Dialogs, Next, Step};
use bot_core::outbound::Target;
use bot_core::pg::{PgPool, PgQueue, PgStateStore};
use bot_core::queue::Queue;
use bot_core::testing::RecordingOutbound;
use bot_core::{
    Bot, Context, Error, ErrorKind, Event, Limits, Ordering, Outbound, OutgoingMessage, Platform,
    Router,
};
use serde::{Deserialize, Serialize};
use support::pg::{database_url, eventually, fresh_pool, queue_builder};

/// Set for the child processes: the schema of the parent's test.
const CHILD_ENV: &str = "PG_DIALOG_CHILD_SCHEMA";

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

fn process(pool: &PgPool, ordering: Ordering) -> Process {
    let outbound = Arc::new(RecordingOutbound::new(Platform::TEST));
    let (bot, queue) = bot_on(pool, ordering, outbound.clone());
    Process {
        bot,
        queue,
        outbound,
    }
}

/// A started bot on `pool`'s queue and state store, sending through `outbound`.
fn bot_on(pool: &PgPool, ordering: Ordering, outbound: Arc<dyn Outbound>) -> (Bot, Arc<PgQueue>) {
    let queue = Arc::new(queue_builder(pool).ordering(ordering).build().unwrap());
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
        .outbound(outbound)
        .handler(handler())
        .build()
        .unwrap();
    bot.start();
    (bot, queue)
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

/// What a child process says: each text it sends, as `said <conversation> <text>`, at once.
#[derive(Debug)]
struct Printing;

#[async_trait]
impl Outbound for Printing {
    fn platform(&self) -> Platform {
        Platform::TEST
    }

    async fn send(&self, target: &Target, messages: Vec<OutgoingMessage>) -> Result<(), Error> {
        let failed = |e| Error::new(ErrorKind::Io, "writing to stdout").with_source(e);
        let mut stdout = std::io::stdout().lock();
        for text in messages.iter().filter_map(|m| m.text.as_deref()) {
            writeln!(stdout, "said {} {text}", target.conversation).map_err(failed)?;
        }
        stdout.flush().map_err(failed)
    }
}

/// A child process: a bot with a pool of its own on the parent's schema, answering what the
/// queue holds until its standard input closes; then it says how many events it completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by two_os_processes_walk_one_conversations_dialogs_step_by_step as its children"]
async fn child_answers_dialogs() {
    let schema = std::env::var(CHILD_ENV).expect("only run as a child of the two-process test");
    let pool = PgPool::builder(database_url())
        .schema(&schema)
        .build()
        .unwrap();
    let (bot, queue) = bot_on(&pool, Ordering::PerConversation, Arc::new(Printing));
    let (closed, stdin_closed) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed.send(());
    });
    println!("ready");
    let _ = stdin_closed.await;
    bot.shutdown().await;
    queue.shutdown().await;
    println!("acked {}", queue.counters().acked);
}

/// The two children, killed if the test fails first.
struct Children(Vec<(Child, Option<ChildStdin>)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// With the durable queue's per-conversation order, two OS processes, each with its own pool,
/// answer the same conversations' dialogs: each answer reaches the step it was given for,
/// whichever process runs it; no step lost, none answered twice or out of turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_os_processes_walk_one_conversations_dialogs_step_by_step() {
    const CONVERSATIONS: usize = 20;
    const ROUNDS: usize = 5;
    const DEADLINE: Duration = Duration::from_secs(120);
    let pool = fresh_pool("dlg_two_os_processes").await;
    let schema = pool.schema().to_owned();
    let (lines, from_children) = mpsc::sync_channel::<(usize, String)>(1024);
    let mut children = Children(Vec::new());
    for index in 0..2 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_answers_dialogs",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, &schema)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a child process");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if lines.send((index, line)).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        children.0.push((child, stdin));
    }
    drop(lines);
    let started = Instant::now();
    let next_line = || {
        let left = DEADLINE.saturating_sub(started.elapsed());
        (from_children.recv_timeout(left)).expect("the children answer in time")
    };
    let mut ready = 0;
    while ready < 2 {
        ready += usize::from(next_line().1 == "ready");
    }

    // One conversation's messages go in, in order; both processes take them out.
    let mut events = Vec::new();
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
                events.push(message(&conv, format!("{conv}-{round}-{i}"), text));
            }
        }
    }
    let pusher = queue_builder(&pool)
        .ordering(Ordering::PerConversation)
        .build()
        .unwrap();
    let pushed = pusher.push_batch(events).await.unwrap();
    assert_eq!(pushed.accepted, CONVERSATIONS * ROUNDS * 4);
    pusher.shutdown().await;

    let mut said: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut said_by = [0_usize; 2];
    while said_by.iter().sum::<usize>() < CONVERSATIONS * ROUNDS * 4 {
        let (index, line) = next_line();
        if let Some((conv, text)) = line.strip_prefix("said ").and_then(|l| l.split_once(' ')) {
            said.entry(conv.to_owned())
                .or_default()
                .push(text.to_owned());
            said_by[index] += 1;
        }
    }
    // Standard input closed: each child shuts down and says what it completed.
    let mut acked = [None; 2];
    for (_, stdin) in &mut children.0 {
        drop(stdin.take());
    }
    while acked.iter().any(Option::is_none) {
        let (index, line) = next_line();
        if let Some(count) = line.strip_prefix("acked ") {
            acked[index] = Some(count.parse::<u64>().unwrap());
        }
        assert!(!line.starts_with("said "), "said more than asked: {line}");
    }
    for (child, _) in &mut children.0 {
        assert!(child.wait().unwrap().success());
    }

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
    let acked = acked.map(Option::unwrap);
    // Past the harness's capture, so that CI's log shows how the work was shared.
    let _ = writeln!(
        std::io::stderr(),
        "two OS processes: messages sent {said_by:?}, events completed {acked:?}"
    );
    assert_eq!(
        acked.iter().sum::<u64>(),
        (CONVERSATIONS * ROUNDS * 4) as u64
    );
    assert!(
        said_by.iter().all(|&n| n > 0) && acked.iter().all(|&n| n > 0),
        "both processes answered: said {said_by:?}, completed {acked:?}"
    );
}

/// Unordered, one conversation's answers run at once in two bots: compare-and-swap on the
/// dialog's record makes every answer count exactly once (a lost race is retried).
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
