//! The widget in headless Chromium, driven over the DevTools protocol: open the demo page, send a
//! message and see the echo, tap a quick reply, drop the connection and see the widget resume
//! without losing or repeating a message.
//!
//! Needs `chromium` on the PATH (or `CHROMIUM` naming it): `scripts/ensure-chromium.sh`
//! installs it, and `scripts/test.sh` runs that. Fails, never skips, without it.

mod support;

use std::process::Stdio;
use std::time::Duration;

use bot_core::outbound::{OutgoingMessage, QuickReply};
use bot_core::{Context, Error, Event, EventKind};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use support::{Harness, Ws};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

/// How long one wait in the page may take: a bound on a hang.
const PAGE_WAIT: Duration = Duration::from_secs(20);

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

/// Headless Chromium with its DevTools endpoint; killed when dropped.
struct Browser {
    child: Child,
    port: u16,
    _profile: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    async fn start() -> Self {
        let program = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile = std::env::temp_dir().join(format!(
            "webchat-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(&program)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {program} ({e}); run scripts/ensure-chromium.sh or set CHROMIUM"
                )
            });
        // Chromium says where DevTools listens on its standard error.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = tokio::time::timeout(PAGE_WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1) {
                    return rest.split('/').next().unwrap().parse::<u16>().unwrap();
                }
            }
            panic!("chromium ended without a DevTools address");
        })
        .await
        .expect("chromium starts");
        Self {
            child,
            port,
            _profile: TempDir(profile),
        }
    }

    /// Opens `url` in a new tab; the tab's DevTools session.
    async fn open(&self, url: &str) -> Page {
        let target: Value = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/json/new?{url}", self.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ws_url = target["webSocketDebuggerUrl"].as_str().unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        Page { ws, next_id: 1 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One tab, driven with `Runtime.evaluate`.
struct Page {
    ws: Ws,
    next_id: u64,
}

impl Page {
    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        match self.try_eval(expression).await {
            Ok(value) => value,
            Err(error) => panic!("{expression} failed: {error}"),
        }
    }

    /// As [`Page::eval`]; `Err` when DevTools refused the call (the page navigated meanwhile).
    async fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let call = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "awaitPromise": true, "returnByValue": true},
        });
        self.ws.send(Message::text(call.to_string())).await.unwrap();
        let answer = tokio::time::timeout(PAGE_WAIT, async {
            loop {
                let Some(Ok(Message::Text(text))) = self.ws.next().await else {
                    panic!("the DevTools connection closed");
                };
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["id"] == id {
                    return value;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer in time to: {expression}"));
        if let Some(error) = answer.get("error") {
            return Err(error.clone());
        }
        if let Some(exception) = answer["result"].get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        Ok(answer["result"]["result"]["value"].clone())
    }

    /// Waits in the page until `condition` (a JS expression) is truthy; fails after the wait.
    async fn wait_for(&mut self, condition: &str) {
        let poll = format!(
            "new Promise((resolve, reject) => {{
                const until = Date.now() + {ms};
                const check = () => {{
                    let ok = false;
                    try {{ ok = !!({condition}); }} catch (e) {{}}
                    if (ok) resolve(true);
                    else if (Date.now() > until) reject(new Error('timed out: ' + {quoted}));
                    else setTimeout(check, 20);
                }};
                check();
            }})",
            ms = PAGE_WAIT.as_millis() - 2000,
            quoted = serde_json::to_string(condition).unwrap(),
        );
        // A navigation destroys the context the promise waits in: wait again in the new one.
        for _ in 0..10 {
            if self.try_eval(&poll).await == Ok(Value::Bool(true)) {
                return;
            }
        }
        panic!("the page kept navigating while waiting for {condition}");
    }

    /// The texts of the bot's bubbles, in order, with their sequence numbers.
    async fn bot_messages(&mut self) -> Vec<(u64, String)> {
        let value = self
            .eval(
                "Array.from(document.querySelectorAll('.wc-bot')).map(b => \
                 [Number(b.dataset.seq), (b.querySelector('.wc-text') || {}).textContent || ''])",
            )
            .await;
        serde_json::from_value(value).unwrap()
    }
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

    let messages = page.bot_messages().await;
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
