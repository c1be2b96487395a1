//! The emulator page in headless Chromium: on each platform, send a message and see the echo,
//! tap a quick reply and see the postback handled; on Discord, see a slow slash command
//! deferred and then answered, and a card drawn as an embed with buttons; on LINE, tap a card's
//! button too. The side
//! panel shows the signed request, the handler's trace and the runtime's figures.
//!
//! Needs `chromium` (scripts/ensure-chromium.sh installs it); fails, never skips, without it.
//! With `EMULATOR_SCREENSHOT=<path.png>` it also saves a screenshot of the page at the end, and
//! of the Discord tab as `<path>-discord.png` (the book's are made that way).
#![allow(clippy::disallowed_methods)] // the page's server runs in one spawned task

use bot_core::Bot;
use emulator::{Emulator, Journal};
use headless_chromium::{Browser, Page};
use tracing_subscriber::layer::SubscriberExt as _;

fn js(value: &str) -> String {
    serde_json::to_string(value).unwrap()
}

/// The text of the last bot message drawn in the conversation shown is `text`.
fn last_bot_text_is(text: &str) -> String {
    format!(
        "(() => {{ const all = document.querySelectorAll('#conversation .msg.bot .text'); \
         return all.length > 0 && all[all.length - 1].textContent === {}; }})()",
        js(text)
    )
}

async fn type_and_send(page: &mut Page, text: &str) {
    page.eval(&format!(
        "(() => {{ document.getElementById('text').value = {}; \
         document.getElementById('send').click(); }})()",
        js(text)
    ))
    .await;
}

async fn tap(page: &mut Page, label: &str) {
    let chip = format!(
        "Array.from(document.querySelectorAll('#conversation .msg.bot .chip')).filter(c => c.textContent === {}).pop()",
        js(label)
    );
    page.wait_for(&chip).await;
    page.eval(&format!("{chip}.click()")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_on_every_platform_tap_a_quick_reply_and_see_the_postback_handled() {
    let journal = Journal::new();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(journal.trace_layer()),
    )
    .unwrap();
    let emulator = Emulator::start(Bot::builder().handler(emulator::demo::router()), journal)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let ui = tokio::spawn(axum::serve(listener, emulator::router(emulator.clone())).into_future());
    emulator.discord_ready().await;

    let browser = Browser::start_with_window(1400, 900).await;
    let mut page = browser.open(&url).await;
    page.wait_for("document.body.dataset.connected === 'true'")
        .await;

    for platform in ["line", "messenger", "discord", "console"] {
        page.eval(&format!(
            "document.querySelector('.tab[data-platform={}]').click()",
            js(platform)
        ))
        .await;
        // The console draws its output as printed: `bot> ...`.
        let said = |text: &str| match platform {
            "console" => format!("bot> {text}"),
            _ => text.to_owned(),
        };
        let hello = format!("hello from {platform}");
        type_and_send(&mut page, &hello).await;
        page.wait_for(&last_bot_text_is(&said(&hello))).await;

        type_and_send(&mut page, "menu").await;
        page.wait_for(&last_bot_text_is(&said("What would you like?")))
            .await;
        tap(&mut page, "Pasta").await;
        page.wait_for(&last_bot_text_is(&said("One pasta, coming up.")))
            .await;

        if platform == "discord" {
            // A slash command whose handler takes 3 s: deferred in time, then answered.
            type_and_send(&mut page, "/slow").await;
            page.wait_for("document.querySelectorAll('#conversation .deferred').length === 1")
                .await;
            page.wait_for(&last_bot_text_is("Done thinking.")).await;
            // A card: an embed with its buttons as components.
            type_and_send(&mut page, "card").await;
            page.wait_for(
                "Array.from(document.querySelectorAll('#conversation .embed .title')).some(t => t.textContent === 'Margherita')",
            )
            .await;
            page.wait_for(
                "Array.from(document.querySelectorAll('#conversation .components .dbutton')).some(b => b.textContent === 'Order')",
            )
            .await;
            if let Ok(path) = std::env::var("EMULATOR_SCREENSHOT") {
                let path = path.replace(".png", "-discord.png");
                page.screenshot(std::path::Path::new(&path)).await;
            }
        }
    }

    // The side panel: the last request sent (the console's stdin line), the traces, the figures.
    let event = page
        .eval("document.getElementById('event').textContent")
        .await;
    assert!(event.as_str().unwrap().contains("\"stdin\""), "{event}");
    page.wait_for(
        "Array.from(document.querySelectorAll('#traces .trace')).some(t => \
         t.textContent.includes('postback') && t.textContent.includes('order taken'))",
    )
    .await;
    page.wait_for("Number((document.getElementById('fig-processed').textContent.match(/ok (\\d+)/) || [])[1]) === 14")
        .await;
    // The figures come from the runtime: the handlers' p99 from its histogram (a number once
    // events were handled, "–" before), in flight and queue depth back to zero when idle.
    page.wait_for("/^≤ [0-9.]+ ms$/.test(document.getElementById('fig-p99').textContent)")
        .await;
    page.wait_for(
        "document.getElementById('fig-inflight').textContent === '0' && \
         document.getElementById('fig-queue').textContent === '0'",
    )
    .await;

    // LINE again: a card drawn from its Flex bubble, its "Order" button tapped.
    page.eval("document.querySelector('.tab[data-platform=\"line\"]').click()")
        .await;
    // Clicking a user's message shows the webhook it was sent as, signature and all.
    page.eval("Array.from(document.querySelectorAll('#conversation .msg.user')).pop().click()")
        .await;
    let event = page
        .eval("document.getElementById('event').textContent")
        .await;
    let event = event.as_str().unwrap();
    assert!(event.contains("x-line-signature"), "{event}");
    assert!(event.contains("\"postback\""), "{event}");
    type_and_send(&mut page, "card").await;
    tap(&mut page, "Order").await;
    page.wait_for(&last_bot_text_is("One margherita, coming up."))
        .await;
    assert_eq!(
        page.eval("document.querySelectorAll('#conversation .card').length")
            .await,
        1,
        "the card is drawn as a card"
    );

    // What the page drew is what the fakes received.
    let (line, graph, discord) = emulator.fakes();
    let replies = line.replies();
    assert!(
        replies
            .iter()
            .any(|r| r.texts() == ["One pasta, coming up."])
    );
    assert!(
        graph
            .messages()
            .iter()
            .any(|m| m.text() == Some("One pasta, coming up."))
    );
    assert_eq!(
        discord.messages_in(emulator::DISCORD_CHANNEL),
        // The card is an embed without content.
        ["hello from discord", "What would you like?", ""]
    );

    if let Ok(path) = std::env::var("EMULATOR_SCREENSHOT") {
        page.screenshot(std::path::Path::new(&path)).await;
    }
    let report = emulator.shutdown().await.unwrap();
    assert!(report.is_some());
    ui.abort();
}
