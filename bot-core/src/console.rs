//! The `console` platform: talk to your bot on stdin and stdout during local development.
//!
//! Each non-empty line typed becomes a text message [`Event`] on [`Platform::CONSOLE`] in the
//! conversation [`CONVERSATION`] from the user [`SENDER`]; replies print as `bot> ...` lines, with
//! their quick replies and buttons as `[Label]`.
//!
//! Typing one of the labels of the last message printed (trimmed, in any case) taps it: a postback
//! label submits an [`EventKind::Postback`] with its data, a message label submits its text; a link
//! button's label stays the text typed. A label counts once its message is printed, so a piped
//! script that types a label before the bot has answered the line before sends plain text.
//!
//! # Examples
//!
//! ```no_run
//! use bot_core::console::Console;
//! use bot_core::{Bot, Context, Error, Event};
//!
//! async fn echo(cx: Context, event: Event) -> Result<(), Error> {
//!     cx.reply(event.text_content().unwrap_or_default()).await
//! }
//!
//! # async fn run() -> Result<(), Error> {
//! let console = Console::new();
//! let bot = Bot::builder().adapter(console.clone()).handler(echo).build()?;
//! bot.start();
//! // Until end of input (ctrl-d, or the end of a piped file) and every line is answered.
//! console.finished().cancelled().await;
//! bot.idle().await;
//! bot.shutdown().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{self, BufRead as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::adapter::{Adapter, Ingress};
use crate::error::{Error, ErrorKind};
use crate::event::{Event, EventKind, Message, Platform, Postback};
use crate::outbound::{Action, Outbound, OutgoingMessage, Target};

/// The conversation every console line belongs to.
pub const CONVERSATION: &str = "console";
/// The sender of every console line.
pub const SENDER: &str = "you";

/// How long to wait before submitting again when the queue refused a line without saying when.
const DEFAULT_SUBMIT_RETRY: Duration = Duration::from_secs(1);
/// Lines read from stdin ahead of the queue; the reading thread waits when they are not taken.
const STDIN_LINES_BUFFERED: usize = 16;

type Reader = Box<dyn AsyncBufRead + Unpin + Send>;
type Writer = Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Unpin + Send>>>;

/// Where the console reads lines from.
enum Input {
    /// The process's stdin, read on a thread of its own.
    Stdin,
    /// Any reader, for tests and scripted sessions.
    Reader(Reader),
}

/// The console adapter: reads lines as events and prints replies.
///
/// Cloning is cheap and every clone is the same console, so keep one to wait on
/// [`Console::finished`] after handing another to [`crate::BotBuilder::adapter`]. A console serves
/// one bot: its input can be read only once.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    input: Mutex<Option<Input>>,
    outbound: Arc<ConsoleOutbound>,
    finished: CancellationToken,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = match &*self.inner.input.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(Input::Stdin) => "stdin",
            Some(Input::Reader(_)) => "reader",
            None => "taken",
        };
        f.debug_struct("Console")
            .field("input", &input)
            .field("finished", &self.inner.finished.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    /// A console on the process's stdin and stdout.
    ///
    /// Stdin is read on a thread of its own, because a blocking read cannot be cancelled: when the
    /// bot shuts down while waiting for a line, that thread is left blocked and ends with the
    /// process.
    pub fn new() -> Self {
        Self::build(Input::Stdin, ConsoleOutbound::stdout())
    }

    /// A console reading lines from `reader` and printing replies to `writer`, for tests and
    /// scripted sessions.
    ///
    /// ```
    /// use bot_core::console::Console;
    ///
    /// let (output, _read_output) = tokio::io::duplex(4096);
    /// let console = Console::with_io(&b"hello\nworld\n"[..], output);
    /// # drop(console);
    /// ```
    pub fn with_io(
        reader: impl AsyncBufRead + Unpin + Send + 'static,
        writer: impl AsyncWrite + Unpin + Send + 'static,
    ) -> Self {
        Self::build(
            Input::Reader(Box::new(reader)),
            ConsoleOutbound::new(writer),
        )
    }

    fn build(input: Input, outbound: ConsoleOutbound) -> Self {
        Self {
            inner: Arc::new(Inner {
                input: Mutex::new(Some(input)),
                outbound: Arc::new(outbound),
                finished: CancellationToken::new(),
            }),
        }
    }

    /// Cancelled when the console stops reading: at the end of input (every line before it has
    /// been submitted), on a read error, or when the bot shuts down.
    ///
    /// Submitted is not handled: [`crate::Bot::shutdown`] drains running handlers but does not
    /// start events still queued, so a bot that must answer every line of a piped script waits
    /// for [`crate::Bot::idle`] before shutting down.
    pub fn finished(&self) -> CancellationToken {
        self.inner.finished.clone()
    }

    /// Runs `bot` (built with this console as an adapter) for a chat session: starts it, waits
    /// for the end of input and for every line to be answered ([`crate::Bot::idle`]), or for
    /// ctrl-c, then shuts it down gracefully and returns the report.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as [`crate::Bot::start`].
    pub async fn run_until_done(&self, bot: &crate::Bot) -> crate::ShutdownReport {
        bot.start();
        let finished = self.finished();
        tokio::select! {
            () = async {
                finished.cancelled().await;
                bot.idle().await;
            } => {}
            r = tokio::signal::ctrl_c() => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot listen for ctrl-c");
                }
            }
        }
        bot.shutdown().await
    }
}

#[async_trait]
impl Adapter for Console {
    fn platform(&self) -> Platform {
        Platform::CONSOLE
    }

    fn outbound(&self) -> Option<Arc<dyn Outbound>> {
        Some(self.inner.outbound.clone())
    }

    async fn run(&self, ingress: Ingress, shutdown: CancellationToken) -> Result<(), Error> {
        let input = self
            .inner
            .input
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(input) = input else {
            return Err(Error::new(
                ErrorKind::Config,
                "console: input is already read by another bot",
            ));
        };
        let result = async {
            let lines = match input {
                Input::Stdin => Lines::stdin()?,
                Input::Reader(reader) => Lines::Reader(reader.lines()),
            };
            read_lines(lines, &self.inner.outbound, &ingress, &shutdown).await
        }
        .await;
        self.inner.finished.cancel();
        result
    }
}

/// A source of lines whose `next_line` is cancel-safe.
enum Lines {
    Reader(tokio::io::Lines<Reader>),
    Stdin(mpsc::Receiver<io::Result<String>>),
}

impl Lines {
    /// Starts the thread that reads stdin.
    fn stdin() -> Result<Self, Error> {
        let (tx, rx) = mpsc::channel(STDIN_LINES_BUFFERED);
        // A plain thread, not a Tokio blocking task: a read of stdin cannot be cancelled, and a
        // blocking task left waiting would keep the runtime from shutting down.
        std::thread::Builder::new()
            .name("console-stdin".to_owned())
            .spawn(move || {
                let stdin = io::stdin();
                let mut stdin = stdin.lock();
                loop {
                    let mut line = String::new();
                    let read = match stdin.read_line(&mut line) {
                        Ok(0) => break,
                        Ok(_) => {
                            let end = line.trim_end_matches(['\n', '\r']).len();
                            line.truncate(end);
                            Ok(line)
                        }
                        Err(e) => Err(e),
                    };
                    let failed = read.is_err();
                    if tx.blocking_send(read).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|e| {
                Error::new(ErrorKind::Io, "console: cannot start the stdin reader").with_source(e)
            })?;
        Ok(Lines::Stdin(rx))
    }

    async fn next_line(&mut self) -> io::Result<Option<String>> {
        match self {
            Lines::Reader(lines) => lines.next_line().await,
            Lines::Stdin(rx) => rx.recv().await.transpose(),
        }
    }
}

/// Submits every non-empty line until the end of input or `shutdown`; a line naming a choice
/// `outbound` offers is submitted as that choice.
async fn read_lines(
    mut lines: Lines,
    outbound: &ConsoleOutbound,
    ingress: &Ingress,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    loop {
        let line = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            line = lines.next_line() => line?,
        };
        let Some(line) = line else {
            tracing::debug!("console input ended");
            return Ok(());
        };
        if line.trim().is_empty() {
            continue;
        }
        let event = outbound.choices.event_for(line);
        if !submit(ingress, event, shutdown).await? {
            return Ok(());
        }
    }
}

/// Submits `event`, waiting and retrying while the queue is full: under `Reject` and `Wait` a
/// typed line is never dropped while the bot runs (a shedding policy may drop it, and says so in
/// the log). Returns `false` when the bot stopped first.
async fn submit(
    ingress: &Ingress,
    event: Event,
    shutdown: &CancellationToken,
) -> Result<bool, Error> {
    loop {
        let error = match ingress.submit(vec![event.clone()]).await {
            Ok(report) => {
                if report.dropped_newest > 0 {
                    tracing::warn!(
                        "the queue is full and sheds load: this console line was dropped"
                    );
                }
                return Ok(true);
            }
            Err(e) => e,
        };
        match error.kind() {
            ErrorKind::QueueClosed => {
                tracing::debug!("bot is shutting down; console stops reading");
                return Ok(false);
            }
            _ if error.is_retryable() => {
                let wait = error.retry_after().unwrap_or(DEFAULT_SUBMIT_RETRY);
                tracing::debug!(error = %error, retry_in = ?wait, "console line not accepted yet");
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => {
                        tracing::warn!("bot stopped before the queue accepted the last console line");
                        return Ok(false);
                    }
                    () = tokio::time::sleep(wait) => {}
                }
            }
            _ => return Err(error),
        }
    }
}

/// Prints a bot's messages as `bot> ...` lines: the console platform's [`Outbound`].
///
/// An image prints as `bot> [image] url`; quick replies and buttons print as ` [label]` after the
/// message; every line of a multi-line text gets its own `bot> `. Each send is written and flushed
/// at once, so the messages of concurrent handlers never interleave within a message.
///
/// It remembers the quick replies and buttons of the last message printed, which the [`Console`]
/// it belongs to offers as choices to type (see the [module docs](self)).
pub struct ConsoleOutbound {
    writer: Writer,
    choices: Choices,
}

impl fmt::Debug for ConsoleOutbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleOutbound")
            .field("choices", &self.choices)
            .finish_non_exhaustive()
    }
}

impl ConsoleOutbound {
    /// Prints to `writer`.
    pub fn new(writer: impl AsyncWrite + Unpin + Send + 'static) -> Self {
        Self {
            writer: Arc::new(tokio::sync::Mutex::new(Box::new(writer))),
            choices: Choices::default(),
        }
    }

    /// Prints to the process's stdout.
    pub fn stdout() -> Self {
        Self::new(tokio::io::stdout())
    }
}

#[async_trait]
impl Outbound for ConsoleOutbound {
    fn platform(&self) -> Platform {
        Platform::CONSOLE
    }

    async fn send(&self, _target: &Target, messages: Vec<OutgoingMessage>) -> Result<(), Error> {
        let mut rendered = String::new();
        for message in &messages {
            render(message, &mut rendered);
        }
        let mut writer = self.writer.lock().await;
        // Offered before the write under the writer's lock: the choices always belong to the last
        // message printed, and are in place by the time anyone can read it.
        if let Some(last) = messages.last() {
            self.choices.offer(last);
        }
        write_all(&mut **writer, rendered.as_bytes()).await
    }
}

/// The labels of the last message printed with what typing them does, shared by the outbound,
/// which sets them, and the reader, which looks typed lines up in them.
#[derive(Default)]
struct Choices {
    offered: Mutex<Vec<(String, Action)>>,
}

impl fmt::Debug for Choices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offered = self.offered.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_list()
            .entries(offered.iter().map(|(label, _)| label))
            .finish()
    }
}

impl Choices {
    /// Replaces the choices with `message`'s quick replies and buttons (none for a plain message).
    fn offer(&self, message: &OutgoingMessage) {
        let offered = message
            .quick_replies
            .iter()
            .map(|q| (q.label.trim().to_lowercase(), q.action.clone()))
            .chain(
                message
                    .buttons
                    .iter()
                    .map(|b| (b.label.trim().to_lowercase(), b.action.clone())),
            )
            .collect();
        *self.offered.lock().unwrap_or_else(|p| p.into_inner()) = offered;
    }

    /// The event a typed `line` stands for: the choice it names, else a text message.
    fn event_for(&self, line: String) -> Event {
        let typed = line.trim().to_lowercase();
        let chosen = self
            .offered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(label, _)| *label == typed)
            .find_map(|(_, action)| match action {
                Action::Postback(data) => Some(EventKind::Postback(Postback {
                    data: data.clone(),
                    params: serde_json::Value::Null,
                })),
                Action::Message(text) => Some(EventKind::Message(Message::text(text.clone()))),
                // The console cannot open a link; the label stays what the user typed.
                Action::Url(_) => None,
            });
        let event = match chosen {
            Some(kind) => Event::new(Platform::CONSOLE, CONVERSATION, kind),
            None => Event::text(Platform::CONSOLE, CONVERSATION, line),
        };
        event.with_sender(SENDER)
    }
}

async fn write_all(
    writer: &mut (dyn AsyncWrite + Unpin + Send),
    bytes: &[u8],
) -> Result<(), Error> {
    writer.write_all(bytes).await.map_err(output_error)?;
    writer.flush().await.map_err(output_error)
}

fn output_error(e: io::Error) -> Error {
    Error::new(ErrorKind::Outbound, "console: cannot write the reply").with_source(e)
}

/// Appends `message` as `bot> ` lines to `out`.
fn render(message: &OutgoingMessage, out: &mut String) {
    let mut lines: Vec<String> = Vec::new();
    if let Some(text) = &message.text {
        lines.extend(text.lines().map(str::to_owned));
    }
    if let Some(image) = &message.image {
        lines.push(format!("[image] {}", image.url));
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    let labels = message
        .quick_replies
        .iter()
        .map(|q| &q.label)
        .chain(message.buttons.iter().map(|b| &b.label));
    if let Some(last) = lines.last_mut() {
        for label in labels {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push('[');
            last.push_str(label);
            last.push(']');
        }
    }
    for line in lines {
        out.push_str("bot>");
        if !line.is_empty() {
            out.push(' ');
            out.push_str(&line);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests;
