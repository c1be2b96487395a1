//! Two Discord applications in one bot: each one's shards, interactions, replies, rate limits,
//! metrics and guild commands stay its own.
#![allow(clippy::disallowed_methods)] // the bot's server runs in one spawned task

use std::sync::Arc;
use std::time::Duration;

use bot_core::testing::fake_api::Fault;
use bot_core::{Adapter as _, Bot, Context, Error, Event, EventKind, Router};
use bot_discord::gateway::ShardRange;
use bot_discord::http::CommandSpec;
use bot_discord::interactions::PublicKey;
use bot_discord::testing::{FakeDiscordApi, FakeGateway, InteractionSigner, slash_command};
use bot_discord::{ConfigureApi as _, Discord, DiscordApplication, DiscordBuilder};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// One application's side of the test: its id, token, key, and its own fake gateway and REST.
struct App {
    id: &'static str,
    token: &'static str,
    signer: InteractionSigner,
    gateway: FakeGateway,
    api: FakeDiscordApi,
}

impl App {
    async fn start(id: &'static str, token: &'static str, secret: u8) -> Self {
        let gateway = FakeGateway::start(token).await.unwrap();
        let api = FakeDiscordApi::start(token, &gateway.url(), 1, 1)
            .await
            .unwrap();
        Self {
            id,
            token,
            signer: InteractionSigner::new([secret; 32]),
            gateway,
            api,
        }
    }

    fn key(&self) -> PublicKey {
        PublicKey::from_hex(&self.signer.public_key_hex()).unwrap()
    }

    /// A slash command for this application.
    fn command(&self, text: &str) -> Value {
        let mut command =
            slash_command("echo", json!([{"name": "text", "value": text}]), "55", "7");
        command["application_id"] = json!(self.id);
        command
    }

    /// The follow-up posts this application's client made, by content.
    fn follow_ups(&self) -> Vec<String> {
        let prefix = format!("/webhooks/{}/", self.id);
        (self.api.api().calls().iter())
            .filter(|c| c.request.path.starts_with(&prefix))
            .map(|c| {
                c.request.json()["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}

/// A bot serving `a` (the builder's own application) and `b`, each against its own fakes.
fn discord(a: &App, b: &App) -> DiscordBuilder {
    Discord::builder(a.token)
        .application_id(a.id)
        .public_key(a.key())
        .api_base(a.api.url())
        .shards(ShardRange::Count(1))
        .http(|h| h.global_per_second(100_000))
        .defer_after(Duration::from_millis(200))
        .application(
            DiscordApplication::new(b.id, b.token)
                .public_key(b.key())
                .shards(ShardRange::Count(1))
                .http(|h| h.api_base(b.api.url()).global_per_second(100_000)),
        )
}

/// Echoes messages, and `/echo` once `gate` lets it (so that its answer is a follow-up).
fn router(gate: Arc<Semaphore>) -> Router {
    let echo_command = move |cx: Context, event: Event| {
        let gate = gate.clone();
        async move {
            let EventKind::Command(command) = &event.kind else {
                return Ok(());
            };
            let text = command.options.get("text").and_then(Value::as_str);
            let text = format!(
                "{} via {}",
                text.unwrap_or("nothing"),
                event.channel.as_ref().unwrap()
            );
            gate.acquire().await.expect("open").forget();
            cx.reply(text).await
        }
    };
    Router::new()
        .text(|cx: Context, event: Event| async move {
            let text = event.text_content().unwrap_or_default().to_owned();
            cx.reply(format!("{text} via {}", event.channel.as_ref().unwrap()))
                .await
        })
        .command("echo", echo_command)
}

async fn serve(
    bot: &Bot,
) -> (
    String,
    tokio::task::JoinHandle<Result<bot_core::ShutdownReport, Error>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    (base, server)
}

// ANCHOR: two_applications
#[tokio::test]
async fn each_application_is_answered_through_its_own_client() {
    let a = App::start("1100000000000000001", "token-a", 1).await;
    let b = App::start("1100000000000000002", "token-b", 2).await;
    let gate = Arc::new(Semaphore::new(0));
    let bot = Bot::builder()
        .adapter(discord(&a, &b).build().unwrap())
        .handler(router(gate.clone()))
        .build()
        .unwrap();
    let (base, server) = serve(&bot).await;

    // The gateway: both bots see one message in a guild they share, under one snowflake.
    a.gateway.wait_for_readies(1).await;
    b.gateway.wait_for_readies(1).await;
    let message = json!({"id": "1180000000000000001", "channel_id": "100", "guild_id": "1",
        "author": {"id": "7", "username": "someone"}, "content": "hello"});
    a.gateway.dispatch("MESSAGE_CREATE", message.clone()).await;
    b.gateway.dispatch("MESSAGE_CREATE", message).await;
    for app in [&a, &b] {
        let posted = app
            .api
            .api()
            .wait_until("an echo", |api| {
                api.calls_to("/channels/100/messages").pop()
            })
            .await;
        // Each fake takes only its own application's token.
        let authorization = format!("Bot {}", app.token);
        assert_eq!(
            posted.request.header("authorization"),
            Some(authorization.as_str())
        );
        assert_eq!(
            posted.request.json()["content"],
            format!("hello via {}", app.id)
        );
    }

    // HTTP interactions, each at its application's path, verified with its key; the handler
    // answers after the deferral, through its application's client.
    for app in [&a, &b] {
        let url = format!("{base}/discord/interactions/{}", app.id);
        let response = app.signer.post(&url, &app.command("hi")).await.unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], 5, "deferred while the handler waits");
        gate.add_permits(1);
        let expected = format!("hi via {}", app.id);
        app.api
            .api()
            .wait_until("a follow-up", |_| {
                app.follow_ups().contains(&expected).then_some(())
            })
            .await;
    }
    assert_eq!(a.follow_ups(), ["hi via 1100000000000000001"]);
    assert_eq!(b.follow_ups(), ["hi via 1100000000000000002"]);

    // Signed by one application, sent to the other's path: refused, nothing delivered.
    let crossed = format!("{base}/discord/interactions/{}", b.id);
    let response = a
        .signer
        .post(&crossed, &a.command("crossed"))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Signed by one application's key for the other application: refused at the shared path.
    let shared = format!("{base}/discord/interactions");
    let response = a.signer.post(&shared, &b.command("claimed")).await.unwrap();
    assert_eq!(response.status(), 401);
    // Tampered after signing: no key verifies it.
    let body = a.command("tampered").to_string();
    let timestamp = InteractionSigner::now();
    let signature = a.signer.sign(&timestamp, body.as_bytes());
    let response = reqwest::Client::new()
        .post(&shared)
        .header(bot_discord::interactions::SIGNATURE_HEADER, signature)
        .header(bot_discord::interactions::TIMESTAMP_HEADER, timestamp)
        .body(body.replace("tampered", "tempered"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // At the shared path the second application's key is tried too, and its answer is its own.
    gate.add_permits(1);
    let response = b.signer.post(&shared, &b.command("bare")).await.unwrap();
    let body: Value = response.json().await.unwrap();
    let expected = format!("bare via {}", b.id);
    if body["type"] == 4 {
        assert_eq!(body["data"]["content"], expected.as_str());
    } else {
        // The handler was slower than the deferral: its answer is a follow-up, still its own.
        b.api
            .api()
            .wait_until("a follow-up", |_| {
                b.follow_ups().contains(&expected).then_some(())
            })
            .await;
    }

    bot.idle().await;
    // Each application's calls carry its id as `bot.channel`.
    let metrics = bot.telemetry().render_prometheus();
    for app in [&a, &b] {
        let labelled = metrics.lines().any(|line| {
            line.starts_with("http_client_request_duration_seconds_count{")
                && line.contains(r#"bot_endpoint="create_message""#)
                && line.contains(&format!(r#"bot_channel="{}""#, app.id))
        });
        assert!(labelled, "{metrics}");
    }
    bot.request_shutdown();
    server.await.unwrap().unwrap();
}
// ANCHOR_END: two_applications

/// The first of two applications has a key, the second none: a body signed with the first's key
/// and naming the second is still refused.
#[tokio::test]
async fn a_body_naming_another_application_is_refused_when_only_one_has_a_key() {
    let a = App::start("1100000000000000001", "token-a", 1).await;
    let b = App::start("1100000000000000002", "token-b", 2).await;
    let discord = Discord::builder(a.token)
        .application_id(a.id)
        .public_key(a.key())
        .api_base(a.api.url())
        .gateway(false)
        .application(DiscordApplication::new(b.id, b.token).http(|h| h.api_base(b.api.url())))
        .build()
        .unwrap();
    let bot = Bot::builder()
        .adapter(discord)
        .handler(router(Arc::new(Semaphore::new(1))))
        .build()
        .unwrap();
    let (base, server) = serve(&bot).await;
    for url in [
        format!("{base}/discord/interactions"),
        format!("{base}/discord/interactions/{}", a.id),
    ] {
        let claimed = a.signer.post(&url, &b.command("claimed")).await.unwrap();
        assert_eq!(claimed.status(), 401, "{url}");
        let ping = json!({"type": 1, "id": "1300000000000000009", "application_id": a.id});
        let own = a.signer.post(&url, &ping).await.unwrap();
        assert_eq!(own.status(), 200, "{url}");
    }
    let metrics = bot.telemetry().render_prometheus();
    assert!(
        metrics
            .lines()
            .any(|line| line.contains(r#"reason="unknown_application""#)),
        "{metrics}"
    );
    bot.request_shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn guild_commands_are_registered_with_every_application_at_start_up() {
    let a = App::start("1100000000000000001", "token-a", 1).await;
    let b = App::start("1100000000000000002", "token-b", 2).await;
    let ping = CommandSpec::slash("ping", "Pong");
    let discord = discord(&a, &b)
        .gateway(false)
        .dev_guild("77")
        .guild_commands([ping.clone()])
        .build()
        .unwrap();
    let bot = Bot::builder()
        .adapter(discord)
        .handler(router(Arc::new(Semaphore::new(0))))
        .build()
        .unwrap();
    bot.start();
    for app in [&a, &b] {
        let path = format!("/applications/{}/guilds/77/commands", app.id);
        let put = app
            .api
            .api()
            .wait_until("the guild commands", |api| api.calls_to(&path).pop())
            .await;
        assert_eq!(put.request.method, http::Method::PUT);
        assert_eq!(app.api.commands(Some("77")).len(), 1);
        assert!(
            app.api.commands(None).is_empty(),
            "global commands untouched"
        );
    }
    bot.shutdown().await;
}

/// The API takes the registration and never answers: shutdown does not wait for it.
#[tokio::test]
async fn shutdown_does_not_wait_for_the_guild_command_registration() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let discord = Discord::builder("token-a")
        .application_id("1100000000000000001")
        .api_base(format!("http://{}", silent.local_addr().unwrap()))
        .timeout(Duration::from_secs(3600))
        .deadline(Duration::from_secs(3600))
        .gateway(false)
        .dev_guild("77")
        .guild_commands([CommandSpec::slash("ping", "Pong")])
        .build()
        .unwrap();
    let bot = Bot::builder()
        .adapter(discord.clone())
        .handler(router(Arc::new(Semaphore::new(0))))
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (ingress, shutdown) = (bot.ingress(), shutdown.clone());
        async move { discord.run(ingress, shutdown).await }
    });
    // The registration is on its way: the API has its connection.
    let (_held, _) = silent.accept().await.unwrap();
    shutdown.cancel();
    // Without the shutdown, the run would last the hour of the call's time-out.
    let stopped = tokio::time::timeout(Duration::from_secs(30), run).await;
    stopped
        .expect("shutdown waited for the registration")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_refused_registration_is_counted_and_stops_nothing_unless_required() {
    for required in [false, true] {
        let a = App::start("1100000000000000001", "token-a", 1).await;
        let b = App::start("1100000000000000002", "token-b", 2).await;
        // The second bot was not invited to the guild with the `applications.commands` scope.
        b.api.api().inject(
            Fault::status(StatusCode::FORBIDDEN)
                .json(&json!({"code": 50001, "message": "Missing Access"})),
        );
        let discord = discord(&a, &b)
            .gateway(false)
            .dev_guild("77")
            .guild_commands([CommandSpec::slash("ping", "Pong")])
            .require_guild_commands(required)
            .build()
            .unwrap();
        let bot = Bot::builder()
            .adapter(discord)
            .handler(router(Arc::new(Semaphore::new(0))))
            .build()
            .unwrap();
        bot.start();
        let counted = |outcome: &str| {
            bot.telemetry().render_prometheus().lines().any(|line| {
                line.starts_with("bot_setup_steps")
                    && line.contains(r#"step="guild_commands""#)
                    && line.contains(&format!(r#"outcome="{outcome}""#))
                    && line.ends_with(" 1")
            })
        };
        let stopped = || {
            let reasons = bot.ingress().readiness().not_ready();
            reasons
                .iter()
                .any(|(part, reason)| part == "discord guild commands" && reason.contains(b.id))
        };
        // Both outcomes counted, and (when required) the adapter stopped: the last thing it does.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !(counted("ok") && counted("failed") && stopped() == required) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not counted or not stopped"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(a.api.commands(Some("77")).len(), 1);
        assert!(b.api.commands(Some("77")).is_empty());
        assert_eq!(bot.is_ready(), !required);
        bot.shutdown().await;
    }
}
