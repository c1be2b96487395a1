//! A `Router` driven end to end through the runtime with `bot_core::testing`.

use std::time::Duration;

use bot_core::event::Other;
use bot_core::router::parse_command;
use bot_core::testing::{self, TestBot};
use bot_core::{
    Context, Error, Event, EventKind, HandlerExt, Limits, Platform, RetryPolicy, Router,
};

async fn pong(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply("pong").await
}

async fn weather(cx: Context, event: Event) -> Result<(), Error> {
    let city = event
        .text_content()
        .and_then(parse_command)
        .map(|(_, args)| args)
        .filter(|args| !args.is_empty())
        .unwrap_or("nowhere");
    cx.reply(format!("sunny in {city}")).await
}

async fn menu(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply("menu opened").await
}

async fn welcome(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply("welcome").await
}

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    cx.reply(format!("echo {}", event.text_content().unwrap_or_default()))
        .await
}

async fn unknown(cx: Context, event: Event) -> Result<(), Error> {
    cx.reply(format!("no idea about {}", event.kind.name()))
        .await
}

fn router() -> Router {
    Router::new()
        .command("ping", pong)
        .command("weather", weather)
        .postback("menu", menu)
        .kind("followed", welcome)
        .text(echo)
        .fallback(unknown)
}

#[tokio::test]
async fn router_dispatches_every_kind_of_event_through_the_runtime() {
    let bot = TestBot::builder().handler(router()).build().unwrap();
    // One conversation, so the replies come in the order the events were sent.
    let events = vec![
        testing::text("u", "/ping"),
        testing::command("u", "ping"),
        testing::text("u", "/weather@my_bot  Tokyo "),
        testing::text("u", "/weather"),
        testing::postback("u", "menu"),
        Event::new(Platform::TEST, "u", EventKind::Followed),
        testing::text("u", "hello"),
        testing::postback("u", "unknown"),
        Event::new(
            Platform::TEST,
            "u",
            EventKind::Other(Other {
                name: "beacon".into(),
            }),
        ),
    ];
    let ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
    bot.send_all(events).await.unwrap();
    let sent = bot.wait_for(ids.len()).await;
    assert_eq!(
        bot.texts(),
        [
            "pong",
            "pong",
            "sunny in Tokyo",
            "sunny in nowhere",
            "menu opened",
            "welcome",
            "echo hello",
            "no idea about postback",
            "no idea about beacon",
        ]
    );
    let replied_to: Vec<_> = sent
        .iter()
        .map(|s| s.target.in_reply_to.clone().unwrap())
        .collect();
    assert_eq!(replied_to, ids);
    bot.idle().await;
    assert_eq!(bot.shutdown().await.not_run(), 0);
}

#[tokio::test(start_paused = true)]
async fn per_route_timeouts_are_enforced_by_the_runtime() {
    async fn slow(cx: Context, _event: Event) -> Result<(), Error> {
        tokio::time::sleep(Duration::from_secs(10)).await;
        cx.reply("slow done").await
    }
    let router = Router::new()
        .command("quick", slow.with_timeout(Duration::from_secs(1)))
        .command("report", slow.with_timeout(Duration::from_secs(60)))
        .text(slow);
    let bot = TestBot::builder()
        .handler(router)
        .limits(Limits {
            handler_timeout: Duration::from_secs(5),
            retry: RetryPolicy::none(),
            ..Limits::default()
        })
        .build()
        .unwrap();
    bot.send_all(vec![
        testing::text("a", "/quick"),
        testing::text("b", "/report"),
        testing::text("c", "plain text"),
    ])
    .await
    .unwrap();
    bot.idle().await;
    // Only the route whose own time-out exceeds the handler's 10 s finished.
    assert_eq!(bot.texts(), ["slow done"]);
    assert_eq!(
        bot.sent()[0].target.conversation.as_str(),
        "b",
        "the /report route has 60 s"
    );
    let mut dead: Vec<_> = bot
        .dead_letters()
        .into_iter()
        .map(|d| (d.event.conversation.to_string(), d.error))
        .collect();
    dead.sort();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].0, "a");
    assert!(dead[0].1.contains("timed out after 1s"), "{}", dead[0].1);
    assert_eq!(dead[1].0, "c");
    assert!(dead[1].1.contains("timed out after 5s"), "{}", dead[1].1);
}

#[tokio::test]
async fn routes_by_platform_before_text() {
    async fn line_only(cx: Context, _event: Event) -> Result<(), Error> {
        cx.reply("line route").await
    }
    let router = Router::new().platform(Platform::LINE, line_only).text(echo);
    let bot = TestBot::builder()
        .handler(router)
        .platforms([Platform::TEST, Platform::LINE])
        .build()
        .unwrap();
    bot.send(Event::text(Platform::LINE, "u", "hi"))
        .await
        .unwrap();
    bot.send(testing::text("u", "hi")).await.unwrap();
    bot.wait_for(2).await;
    assert_eq!(bot.outbound(&Platform::LINE).texts(), ["line route"]);
    assert_eq!(bot.outbound(&Platform::TEST).texts(), ["echo hi"]);
}
