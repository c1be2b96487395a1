//! Headless Chromium for browser tests, driven over the DevTools protocol: start the browser,
//! open a page, evaluate JavaScript in it, wait for a condition, take a screenshot.
//!
//! Needs `chromium` on the PATH (or `CHROMIUM` naming it): `scripts/ensure-chromium.sh`
//! installs Debian's package, and `scripts/test.sh` runs that. A test using it fails, never
//! skips, without it.
//!
//! ```no_run
//! # async fn run() {
//! use headless_chromium::Browser;
//!
//! let browser = Browser::start().await;
//! let mut page = browser.open("http://127.0.0.1:8080/").await;
//! page.wait_for("document.title === 'ready'").await;
//! let title = page.eval("document.title").await;
//! assert_eq!(title, "ready");
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long one wait in the page may take: a bound on a hang.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);

/// Headless Chromium with its DevTools endpoint; killed when dropped.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    port: u16,
    _profile: TempDir,
}

#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts the browser with a fresh profile and a window of 1280x800.
    ///
    /// # Panics
    ///
    /// When Chromium cannot be started or does not say where DevTools listens in time.
    pub async fn start() -> Self {
        Self::start_with_window(1280, 800).await
    }

    /// Starts the browser with a window of `width` x `height` CSS pixels.
    ///
    /// # Panics
    ///
    /// As [`Browser::start`].
    pub async fn start_with_window(width: u32, height: u32) -> Self {
        let program = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile = std::env::temp_dir().join(format!(
            "headless-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&profile).expect("a profile directory");
        let mut child = Command::new(&program)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={width},{height}"))
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
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let port = tokio::time::timeout(PAGE_WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1)
                    && let Some(Ok(port)) = rest.split('/').next().map(str::parse::<u16>)
                {
                    return port;
                }
            }
            panic!("chromium ended without a DevTools address");
        })
        .await
        .expect("chromium starts in time");
        Self {
            child,
            port,
            _profile: TempDir(profile),
        }
    }

    /// Opens `url` in a new tab; the tab's DevTools session.
    ///
    /// # Panics
    ///
    /// When DevTools refuses the tab.
    pub async fn open(&self, url: &str) -> Page {
        let target: Value = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/json/new?{url}", self.port))
            .send()
            .await
            .expect("DevTools answers")
            .json()
            .await
            .expect("DevTools answers JSON");
        let ws_url = target["webSocketDebuggerUrl"]
            .as_str()
            .expect("a webSocketDebuggerUrl");
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("the tab's DevTools socket");
        Page { ws, next_id: 1 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One tab, driven with DevTools commands.
#[derive(Debug)]
pub struct Page {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    ///
    /// # Panics
    ///
    /// When the expression throws or DevTools refuses it.
    pub async fn eval(&mut self, expression: &str) -> Value {
        match self.try_eval(expression).await {
            Ok(value) => value,
            Err(error) => panic!("{expression} failed: {error}"),
        }
    }

    /// As [`Page::eval`]; `Err` when DevTools refused the call (the page navigated meanwhile).
    ///
    /// # Panics
    ///
    /// When the expression throws.
    pub async fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let answer = self
            .command(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await?;
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        Ok(answer["result"]["value"].clone())
    }

    /// Sends one DevTools command and returns its `result`; `Err` with DevTools' `error`.
    ///
    /// # Panics
    ///
    /// When the DevTools socket closes or no answer comes within [`PAGE_WAIT`].
    pub async fn command(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let call = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(call.to_string()))
            .await
            .expect("the DevTools socket takes the command");
        let answer = tokio::time::timeout(PAGE_WAIT, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let value: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                        if value["id"] == id {
                            return value;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => panic!("the DevTools connection closed"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer in time to {method}"));
        match answer.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(answer["result"].clone()),
        }
    }

    /// Waits in the page until `condition` (a JS expression) is truthy.
    ///
    /// # Panics
    ///
    /// When it is not within [`PAGE_WAIT`].
    pub async fn wait_for(&mut self, condition: &str) {
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
            quoted = serde_json::to_string(condition).unwrap_or_default(),
        );
        // A navigation destroys the context the promise waits in: wait again in the new one.
        for _ in 0..10 {
            if self.try_eval(&poll).await == Ok(Value::Bool(true)) {
                return;
            }
        }
        panic!("the page kept navigating while waiting for {condition}");
    }

    /// Writes a PNG of the page as shown (the window's size) to `path`.
    ///
    /// # Panics
    ///
    /// When DevTools refuses or the file cannot be written.
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .command("Page.captureScreenshot", json!({"format": "png"}))
            .await
            .unwrap_or_else(|e| panic!("no screenshot: {e}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("DevTools sends base64");
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}
