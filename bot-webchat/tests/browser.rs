//! The widget in headless Chromium, driven over the DevTools protocol: open the demo page, send a
//! message and see the echo, tap a quick reply, drop the connection and see the widget resume
//! without losing or repeating a message.
//!
//! Needs `chromium` on the PATH (or `CHROMIUM` naming it): `scripts/ensure-chromium.sh`
//! installs it, and `scripts/test.sh` runs that. Fails, never skips, without it. The browser is
//! driven by the workspace's `headless-chromium` helper, which the emulator's test shares.

mod support;

use bot_core::outbound::{OutgoingMessage, QuickReply};
use bot_core::{Context, Error, Event, EventKind};
use headless_chromium::{Browser, Page};
use support::Harness;

async fn handler(cx: Context, event: Event) -> Result<(), Error> {
    match (&event.kind, event.text_content()) {
        (EventKind::Postback(p), _) => cx.reply(format!("you chose {}", p.data)).await,
        (_, Some("menu")) => {
            cx.reply(
                OutgoingMessage::text("What would you like?")
                    .quick_reply(QuickReply::message("Pizza"))
                    .quick_reply(QuickReply::postback("Pasta", "order=pasta")),
            )
            .await
        }
        (_, Some(text)) => cx.reply(text).await,
        _ => Ok(()),
    }
}

/// The texts of the bot's bubbles, in order, with their sequence numbers.
async fn bot_messages(page: &mut Page) -> Vec<(u64, String)> {
    let value = page
        .eval(
            "Array.from(document.querySelectorAll('.wc-bot')).map(b => \
             [Number(b.dataset.seq), (b.querySelector('.wc-text') || {}).textContent || ''])",
        )
        .await;
    serde_json::from_value(value).unwrap()
}

fn last_bot_text_is(text: &str) -> String {
    format!(
        "(() => {{ const all = document.querySelectorAll('.wc-bot .wc-text'); \
         return all.length && all[all.length - 1].textContent === {}; }})()",
        serde_json::to_string(text).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_chats_taps_quick_replies_and_resumes_without_losing_a_message() {
    let h = Harness::start_with(handler, |w| w.demo(true), |b| b).await;
    let browser = Browser::start().await;
    let mut page = browser.open(&format!("{}/webchat/demo", h.base)).await;
    page.wait_for("document.querySelector('.wc') && document.querySelector('.wc').dataset.state === 'connected'")
        .await;
    let user = page
        .eval("document.getElementById('user').textContent")
        .await;
    let user = user.as_str().unwrap().to_owned();

    // Type a message and send it: the handler's echo comes back.
    page.eval(
        "(() => { const i = document.querySelector('.wc-input'); i.value = 'hello browser'; \
         document.querySelector('.wc-send').click(); })()",
    )
    .await;
    page.wait_for(&last_bot_text_is("hello browser")).await;
    // The user's bubble was acknowledged.
    page.wait_for("document.querySelectorAll('.wc-user.wc-pending').length === 0")
        .await;

    // Quick replies: tap the postback chip.
    page.eval("__webchat.sendText('menu')").await;
    page.wait_for("document.querySelectorAll('.wc-chip').length === 2")
        .await;
    page.eval(
        "Array.from(document.querySelectorAll('.wc-chip')).find(c => c.textContent === 'Pasta').click()",
    )
    .await;
    page.wait_for(&last_bot_text_is("you chose order=pasta"))
        .await;

    // Drop the connection; while the widget is away the bot sends twice; it resumes.
    page.eval("__webchat.drop()").await;
    page.wait_for("document.querySelector('.wc').dataset.state === 'disconnected'")
        .await;
    let client = h.webchat.client();
    client
        .send_to(&user, &["while away 1".into()])
        .await
        .unwrap();
    client
        .send_to(&user, &["while away 2".into()])
        .await
        .unwrap();
    page.wait_for(&last_bot_text_is("while away 2")).await;
    page.eval("__webchat.sendText('after resume')").await;
    page.wait_for(&last_bot_text_is("after resume")).await;

    let messages = bot_messages(&mut page).await;
    let texts: Vec<&str> = messages.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "hello browser",
            "What would you like?",
            "you chose order=pasta",
            "while away 1",
            "while away 2",
            "after resume"
        ]
    );
    let seqs: Vec<u64> = messages.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "each message once, in order");
    assert!(h.webchat.stats().joined >= 2, "the widget joined again");
}
