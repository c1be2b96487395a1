use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot_core::{Bot, Context, Error, Event};
use bot_discord::ConfigureApi as _;
use bot_discord::Discord;
use bot_discord::event::{DispatchContext, from_dispatch};
use bot_discord::testing::FakeDiscordApi;
use twilight_gateway::{EventTypeFlags, StreamExt as _};
use twilight_model::gateway::event::{DispatchEvent, GatewayEvent};

use super::fake_gateway::FastGateway;
use super::frames::{message_create, ready};
use super::{GUILD_ID, TOKEN};

#[test]
fn dispatches_are_about_a_kilobyte_and_parse_as_twilight_model() {
    let mut frame = String::new();
    for number in [0_u64, 7, 199_999] {
        message_create(&mut frame, number + 2, number, 100);
        assert!((900..=1300).contains(&frame.len()), "{}", frame.len());
        let parsed = twilight_gateway::parse(frame.clone(), EventTypeFlags::all())
            .unwrap()
            .unwrap();
        let GatewayEvent::Dispatch(sequence, DispatchEvent::MessageCreate(message)) = parsed else {
            panic!("not a MESSAGE_CREATE: {parsed:?}")
        };
        assert_eq!(sequence, number + 2);
        assert_eq!(
            message.id.get(),
            1_180_000_000_000_000_000 + number,
            "unique ids"
        );
        assert!(message.content.contains(&format!("message {number}:")));
        assert_eq!(message.mentions.len(), 1);
        assert!(message.member.is_some() && message.embeds.is_empty());
        assert_eq!(message.guild_id.map(|g| g.get()), Some(GUILD_ID));
    }
}

#[test]
fn dispatches_map_to_our_events_and_ready_parses_as_twilight_model() {
    let mut frame = String::new();
    message_create(&mut frame, 9, 7, 100);
    let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
    let mut context = DispatchContext::default();
    context.bot_user_id = Some(bot_discord::testing::BOT_USER_ID.to_owned());
    context.session_id = Some("botload-session".to_owned());
    let event = from_dispatch("MESSAGE_CREATE", value["d"].clone(), Some(9), &context).unwrap();
    assert!(
        event
            .text_content()
            .is_some_and(|t| t.contains("message 7:"))
    );
    let ready = ready("ws://127.0.0.1:1");
    let parsed = twilight_gateway::parse(ready, EventTypeFlags::all())
        .unwrap()
        .unwrap();
    assert!(matches!(
        parsed,
        GatewayEvent::Dispatch(1, DispatchEvent::Ready(_))
    ));
}

/// The fake's handshake and stream as a twilight shard sees them: READY, then every
/// dispatch in sequence, nothing before `go`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilight_shard_reads_every_dispatch_in_order() {
    let gateway = FastGateway::start(100, 10).await.unwrap();
    let config = twilight_gateway::ConfigBuilder::new(
        TOKEN.to_owned(),
        twilight_gateway::Intents::GUILD_MESSAGES,
    )
    .proxy_url(gateway.url().to_owned())
    .build();
    let mut shard = twilight_gateway::Shard::with_config(twilight_gateway::ShardId::ONE, config);
    let mut seen = Vec::new();
    let mut ready = false;
    while seen.len() < 100 {
        let event = tokio::time::timeout(Duration::from_secs(10), async {
            shard.next_event(EventTypeFlags::all()).await
        })
        .await
        .expect("the fake stalled")
        .expect("the shard ended")
        .unwrap();
        match event {
            twilight_gateway::Event::Ready(_) => {
                ready = true;
                assert_eq!(gateway.written(), 0);
                gateway.go();
            }
            twilight_gateway::Event::MessageCreate(m) => {
                assert!(ready);
                seen.push(m.id.get() - 1_180_000_000_000_000_000);
            }
            _ => {}
        }
    }
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    assert_eq!(gateway.connections(), 1);
}

/// botrt's shard consumes the fake's dispatches too (the same check the scenario makes on
/// noop-bot, in this process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_botrt_shard_handles_every_dispatch() {
    let gateway = FastGateway::start(200, 10).await.unwrap();
    let api = FakeDiscordApi::start(TOKEN, gateway.url(), 1, 1)
        .await
        .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let counter = handled.clone();
    let discord = Discord::builder(TOKEN)
        .api_base(api.url())
        .gateway_url(gateway.url())
        .build()
        .unwrap();
    let bot = Bot::builder()
        .adapter(discord)
        .handler(move |_cx: Context, _event: Event| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    gateway.wait_for_ready(|| Ok(())).await.unwrap();
    gateway.go();
    let deadline = Instant::now() + Duration::from_secs(20);
    while handled.load(Ordering::Relaxed) < 200 {
        assert!(
            Instant::now() < deadline,
            "{} handled",
            handled.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gateway.written(), 200);
    assert_eq!(gateway.connections(), 1);
    bot.shutdown().await;
}

#[test]
fn the_defaults_are_the_issues_run() {
    use clap::Parser as _;
    let cli = crate::Cli::try_parse_from(["botload", "scenario", "gateway-consume"]).unwrap();
    let crate::Command::Scenario {
        scenario: crate::Scenario::GatewayConsume(args),
    } = cli.command
    else {
        panic!("gateway-consume")
    };
    assert_eq!((args.messages, args.runs), (200_000, 2));
}
