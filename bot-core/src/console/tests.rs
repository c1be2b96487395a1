use std::io::Cursor;

use tokio::io::{AsyncBufReadExt as _, BufReader, DuplexStream};
use tokio::sync::Semaphore;

use super::*;
use crate::bot::Bot;
use crate::context::Context;
use crate::limits::Limits;
use crate::outbound::{Button, QuickReply};

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    assert_eq!(event.platform, Platform::CONSOLE);
    assert_eq!(event.conversation.as_str(), CONVERSATION);
    assert_eq!(event.sender.as_ref().map(|s| s.as_str()), Some(SENDER));
    cx.reply(event.text_content().unwrap_or_default()).await
}

/// Reads `count` lines of the console's output.
async fn read_output(output: DuplexStream, count: usize) -> Vec<String> {
    let mut lines = BufReader::new(output).lines();
    let mut read = Vec::new();
    while read.len() < count {
        match lines.next_line().await.unwrap() {
            Some(line) => read.push(line),
            None => break,
        }
    }
    read
}

fn script(text: &str) -> Cursor<Vec<u8>> {
    Cursor::new(text.as_bytes().to_vec())
}

#[tokio::test]
async fn echoes_each_line_in_order_and_finishes_at_eof() {
    let (writer, output) = tokio::io::duplex(4096);
    let console = Console::with_io(script("hello\n\n   \r\nworld\r\n"), writer);
    let bot = Bot::builder()
        .adapter(console.clone())
        .handler(echo)
        .build()
        .unwrap();
    bot.start();
    let lines = tokio::time::timeout(Duration::from_secs(10), read_output(output, 2))
        .await
        .expect("the bot answered both lines");
    assert_eq!(lines, ["bot> hello", "bot> world"]);
    tokio::time::timeout(Duration::from_secs(10), console.finished().cancelled())
        .await
        .expect("finished fires at end of input");
    let report = bot.shutdown().await;
    assert_eq!(report.not_run(), 0);
}

#[tokio::test(start_paused = true)]
async fn waits_for_room_when_the_queue_is_full() {
    let gate = Arc::new(Semaphore::new(0));
    let handler_gate = gate.clone();
    let gated_echo = move |cx: Context, event: Event| {
        let gate = handler_gate.clone();
        async move {
            gate.acquire().await.expect("the gate stays open").forget();
            echo(cx, event).await
        }
    };
    let (writer, output) = tokio::io::duplex(4096);
    let console = Console::with_io(script("1\n2\n3\n4\n"), writer);
    let bot = Bot::builder()
        .adapter(console.clone())
        .handler(gated_echo)
        .limits(Limits {
            queue_capacity: 1,
            ..Limits::default()
        })
        .build()
        .unwrap();
    bot.start();
    // "1" runs (held at the gate), "2" fills the queue, "3" is refused and retried.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!console.finished().is_cancelled());
    assert_eq!(bot.queue().depth(), 1);
    gate.add_permits(4);
    let lines = read_output(output, 4).await;
    assert_eq!(lines, ["bot> 1", "bot> 2", "bot> 3", "bot> 4"]);
    console.finished().cancelled().await;
    bot.shutdown().await;
}

#[tokio::test]
async fn stops_reading_at_shutdown() {
    // Input that never ends: the other half stays open and silent.
    let (input, _keep_open) = tokio::io::duplex(64);
    let console = Console::with_io(BufReader::new(input), tokio::io::sink());
    let bot = Bot::builder()
        .adapter(console.clone())
        .handler(echo)
        .build()
        .unwrap();
    bot.start();
    tokio::task::yield_now().await;
    assert!(!console.finished().is_cancelled());
    bot.shutdown().await;
    assert!(console.finished().is_cancelled());
}

#[tokio::test]
async fn input_is_read_by_one_bot_only() {
    let console = Console::with_io(script(""), tokio::io::sink());
    let bot = Bot::builder().handler(echo).build().unwrap();
    let first = console.run(bot.ingress(), CancellationToken::new()).await;
    assert!(first.is_ok());
    let second = console
        .run(bot.ingress(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(second.kind(), ErrorKind::Config);
}

#[test]
fn renders_images_labels_and_multiline_text() {
    let mut out = String::new();
    render(&OutgoingMessage::text("hi"), &mut out);
    render(
        &OutgoingMessage::text("pick one")
            .quick_reply(QuickReply::message("Yes"))
            .quick_reply(QuickReply::postback("No", "no"))
            .button(Button::link("Docs", "https://example.invalid")),
        &mut out,
    );
    render(
        &OutgoingMessage::image("https://example.invalid/a.png"),
        &mut out,
    );
    render(&OutgoingMessage::text("two\nlines"), &mut out);
    render(
        &OutgoingMessage::default().button(Button::postback("Go", "go")),
        &mut out,
    );
    render(&OutgoingMessage::text(""), &mut out);
    assert_eq!(
        out,
        "bot> hi\n\
         bot> pick one [Yes] [No] [Docs]\n\
         bot> [image] https://example.invalid/a.png\n\
         bot> two\n\
         bot> lines\n\
         bot> [Go]\n\
         bot>\n"
    );
}

#[tokio::test]
async fn one_send_writes_its_messages_together() {
    let (writer, output) = tokio::io::duplex(4096);
    let outbound = ConsoleOutbound::new(writer);
    outbound
        .send(
            &Target::conversation(CONVERSATION),
            vec![OutgoingMessage::text("a"), OutgoingMessage::text("b")],
        )
        .await
        .unwrap();
    drop(outbound);
    assert_eq!(read_output(output, 3).await, ["bot> a", "bot> b"]);
}

#[tokio::test]
async fn typing_a_postback_label_submits_the_postback() {
    let (seen_tx, mut seen) = mpsc::channel(4);
    let record = move |_cx: Context, event: Event| {
        let seen_tx = seen_tx.clone();
        async move {
            seen_tx.send(event).await.expect("the test is listening");
            Ok::<_, Error>(())
        }
    };
    let (writer, output) = tokio::io::duplex(4096);
    let console = Console::with_io(script("red\nblue\n"), writer);
    let menu = OutgoingMessage::text("Pick a color:")
        .quick_reply(QuickReply::postback("Red", "color:red"));
    let outbound = console.outbound().expect("the console prints");
    outbound
        .send(&Target::conversation(CONVERSATION), vec![menu])
        .await
        .unwrap();
    assert_eq!(read_output(output, 1).await, ["bot> Pick a color: [Red]"]);
    let bot = Bot::builder()
        .adapter(console.clone())
        .handler(record)
        .build()
        .unwrap();
    bot.start();

    let wait = Duration::from_secs(10);
    let tapped = tokio::time::timeout(wait, seen.recv()).await.unwrap();
    let tapped = tapped.expect("the label's event");
    assert_eq!(
        tapped.kind,
        EventKind::Postback(Postback {
            data: "color:red".to_owned(),
            params: serde_json::Value::Null,
        })
    );
    assert_eq!(tapped.sender.as_ref().map(|s| s.as_str()), Some(SENDER));
    assert_eq!(tapped.conversation.as_str(), CONVERSATION);
    let typed = tokio::time::timeout(wait, seen.recv()).await.unwrap();
    let typed = typed.expect("the plain line's event");
    assert_eq!(typed.text_content(), Some("blue"), "not a label: text");
    console.finished().cancelled().await;
    bot.idle().await;
    bot.shutdown().await;
}

#[tokio::test]
async fn choices_are_those_of_the_last_message_printed() {
    let outbound = ConsoleOutbound::new(tokio::io::sink());
    let target = Target::conversation(CONVERSATION);
    let menu = OutgoingMessage::text("well?")
        .quick_reply(QuickReply::message("Yes"))
        .quick_reply(QuickReply {
            label: "Sure".to_owned(),
            action: Action::Message("yes please".to_owned()),
        })
        .button(Button::postback("Go", "go"))
        .button(Button::link("Docs", "https://example.invalid"));
    outbound.send(&target, vec![menu.clone()]).await.unwrap();
    let typed = |line: &str| outbound.choices.event_for(line.to_owned()).into_data().kind;
    let text = |text: &str| EventKind::Message(Message::text(text));
    let postback = |data: &str| {
        EventKind::Postback(Postback {
            data: data.to_owned(),
            params: serde_json::Value::Null,
        })
    };
    assert_eq!(typed("  SURE "), text("yes please"));
    assert_eq!(typed("yes"), text("Yes"));
    assert_eq!(typed("gO"), postback("go"));
    assert_eq!(typed("Docs"), text("Docs"), "a link is not followed");
    assert_eq!(typed("go on"), text("go on"));

    outbound
        .send(&target, vec![menu, OutgoingMessage::text("or not")])
        .await
        .unwrap();
    assert_eq!(typed("go"), text("go"), "replaced by the last message's");
}

#[test]
fn public_types_are_send_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Console>();
    assert_send_sync::<ConsoleOutbound>();
}
