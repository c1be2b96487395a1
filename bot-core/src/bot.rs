//! The bot: adapters, a handler, limits and a queue, assembled by [`BotBuilder`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::adapter::{Adapter, Attach, Clients, Ingress};
use crate::context::{Shared, TypeMap};
use crate::error::Error;
use crate::event::Platform;
use crate::handler::{BoxHandler, Handler};
use crate::limits::Limits;
use crate::outbound::Outbound;
use crate::queue::{DeadLetter, MemoryQueue, Queue};
use crate::runtime::{DeadLetterHook, Progress, ShutdownReport, Supervisor};
use crate::state::{MemoryStateStore, StateStore};
use crate::telemetry::Telemetry;

/// Default limit of a webhook request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default time-out of one HTTP request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A configured bot. Cloning is cheap; all clones are the same bot.
///
/// # Examples
///
/// ```no_run
/// use bot_core::{Bot, Context, Event, Error, Router};
///
/// # async fn run() -> Result<(), Error> {
/// let bot = Bot::builder()
///     .handler(Router::new().command("ping", |cx: Context, _e: Event| async move {
///         cx.reply("pong").await
///     }))
///     .build()?;
/// bot.serve("127.0.0.1:8080").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bot {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) limits: Limits,
    pub(crate) telemetry: Telemetry,
    pub(crate) ingress: Ingress,
    pub(crate) adapters: Vec<Arc<dyn Adapter>>,
    pub(crate) max_body_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) server: crate::server::ServerSettings,
    pub(crate) shutdown_requested: CancellationToken,
    /// The outbox and this process's senders of it ([`BotBuilder::outbox`]).
    #[cfg(feature = "postgres")]
    outbox: Option<(crate::outbox::Outbox, crate::outbox::OutboxSenders)>,
    progress: Arc<Progress>,
    supervisor: Mutex<Option<Supervisor>>,
    run: Mutex<RunState>,
    report: tokio::sync::OnceCell<ShutdownReport>,
}

#[derive(Default)]
struct RunState {
    supervisor: Option<JoinHandle<ShutdownReport>>,
    adapters: Vec<JoinHandle<()>>,
    stop_supervisor: CancellationToken,
    stop_adapters: CancellationToken,
    started: bool,
}

impl fmt::Debug for Bot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bot")
            .field("limits", &self.inner.limits)
            .field("adapters", &self.inner.adapters)
            .field("queue", &self.inner.queue)
            .finish_non_exhaustive()
    }
}

impl Bot {
    /// Starts building a bot.
    pub fn builder() -> BotBuilder {
        BotBuilder::default()
    }

    /// Starts the supervisor and the adapters' tasks. Idempotent; [`Bot::serve`] calls it.
    ///
    /// Use it when you mount [`Bot::webhooks`] in your own server, or in tests. Must be called
    /// inside a Tokio runtime. Does nothing once a shutdown was requested.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, since it spawns the bot's tasks.
    pub fn start(&self) {
        let mut run = self.inner.run.lock().unwrap_or_else(|p| p.into_inner());
        if run.started || self.inner.shutdown_requested.is_cancelled() {
            return;
        }
        run.started = true;
        let supervisor = self
            .inner
            .supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(supervisor) = supervisor {
            let stop = run.stop_supervisor.clone();
            // One long-lived dispatcher per bot, not per-message work.
            #[allow(clippy::disallowed_methods)]
            let handle = tokio::spawn(supervisor.run(stop));
            run.supervisor = Some(handle);
        }
        #[cfg(feature = "postgres")]
        if let Some((_, senders)) = &self.inner.outbox {
            senders.start();
        }
        for adapter in &self.inner.adapters {
            let adapter = adapter.clone();
            let ingress = self.inner.ingress.clone();
            let stop = run.stop_adapters.clone();
            // One long-lived task per adapter (gateway, stdin reader), not per-message work.
            #[allow(clippy::disallowed_methods)]
            run.adapters.push(tokio::spawn(async move {
                let platform = adapter.platform();
                if let Err(e) = adapter.run(ingress, stop).await {
                    tracing::error!(%platform, error = %e, "adapter task failed");
                }
            }));
        }
    }

    /// Whether the bot is started, accepting events, and every component registered with
    /// [`crate::readiness::Readiness`] is ready (what `/readyz` answers).
    pub fn is_ready(&self) -> bool {
        let started = self
            .inner
            .run
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .started;
        started && self.inner.ingress.is_accepting() && self.inner.ingress.readiness().is_ready()
    }

    /// Waits until every event accepted through [`Bot::ingress`] so far has finished: acknowledged
    /// after success, dead-lettered, or evicted by [`crate::Overflow::DropOldest`]. Retries count
    /// as not finished.
    ///
    /// Use it before [`Bot::shutdown`] when the work queued must not be left behind, as a console
    /// bot does at the end of its input. It counts this process's events, submitted through the
    /// ingress or re-driven with [`Bot::redrive_dead_letters`]; events pushed by calling the
    /// [`Queue`] directly are not counted. It also returns once the bot has shut down, whatever
    /// was left.
    pub async fn idle(&self) {
        self.inner.progress.wait_idle().await;
    }

    /// Asks a running [`Bot::serve`] to shut down gracefully, as SIGTERM would.
    pub fn request_shutdown(&self) {
        self.inner.shutdown_requested.cancel();
    }

    /// Shuts down gracefully: readiness goes 503 and ingress refuses new events, adapters stop,
    /// running handlers get `shutdown_timeout` to finish, then are cancelled. Idempotent: later
    /// calls return the first report.
    pub async fn shutdown(&self) -> ShutdownReport {
        *self
            .inner
            .report
            .get_or_init(|| async {
                // A running `serve` stops its listener once this drain is over.
                self.inner.shutdown_requested.cancel();
                self.inner.ingress.stop_accepting();
                let (supervisor, adapters) = {
                    let mut run = self.inner.run.lock().unwrap_or_else(|p| p.into_inner());
                    run.stop_adapters.cancel();
                    run.stop_supervisor.cancel();
                    (run.supervisor.take(), std::mem::take(&mut run.adapters))
                };
                // The outbox's senders stop at once, beside the handlers' drain, so that the
                // whole shutdown fits one `shutdown_timeout`: what handlers queue meanwhile is
                // committed, and sent by this process's next start or by another process.
                let senders = async {
                    #[cfg(feature = "postgres")]
                    if let Some((_, senders)) = &self.inner.outbox {
                        let sent = senders.shutdown().await;
                        tracing::info!(?sent, "outbox senders stopped");
                    }
                };
                let drain = async {
                    let supervised = match supervisor {
                        Some(handle) => handle
                            .await
                            .inspect_err(|e| tracing::error!(error = %e, "supervisor task failed"))
                            .ok(),
                        None => None,
                    };
                    // Without a supervisor's report (never started, or it failed), everything
                    // still queued is what did not run.
                    let report = match supervised {
                        Some(report) => report,
                        None => {
                            self.inner.queue.close();
                            ShutdownReport {
                                not_started: self.inner.queue.depth_now().await,
                                ..ShutdownReport::default()
                            }
                        }
                    };
                    self.inner.progress.stop();
                    for handle in adapters {
                        // Adapters were told to stop; give them the drain time at most.
                        if tokio::time::timeout(self.inner.limits.shutdown_timeout, handle)
                            .await
                            .is_err()
                        {
                            tracing::warn!("an adapter task did not stop in time");
                        }
                    }
                    report
                };
                let (report, ()) = tokio::join!(drain, senders);
                self.inner.telemetry.flush();
                report
            })
            .await
    }

    /// The dead letters the queue keeps, oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// Fails when the queue backend fails.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        self.inner.queue.dead_letters(limit).await
    }

    /// Puts up to `max` dead letters back in the queue to be handled again (after fixing what made
    /// them fail). Returns how many went back.
    ///
    /// # Errors
    ///
    /// Fails when the queue backend fails.
    pub async fn redrive_dead_letters(&self, max: usize) -> Result<usize, Error> {
        // Counted before the push (as the ingress does), so that `idle` never sees them finish
        // before they were counted; the estimate is corrected once the queue says how many.
        let counted = self
            .inner
            .progress
            .count_ahead(max.min(self.inner.limits.dead_letter_capacity));
        let n = self.inner.queue.redrive(max).await?;
        counted.settle(n);
        Ok(n)
    }

    /// The handle adapters and custom ingress code submit events through.
    pub fn ingress(&self) -> Ingress {
        self.inner.ingress.clone()
    }

    /// The queue. Pushing or completing through it directly bypasses the ingress's counting, so
    /// [`Bot::idle`] does not see those events.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.queue
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The bot's telemetry.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// The bot's outbox ([`BotBuilder::outbox`]), if it has one.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn outbox(&self) -> Option<&crate::outbox::Outbox> {
        self.inner.outbox.as_ref().map(|(outbox, _)| outbox)
    }

    /// Queues a proactive message in the bot's outbox, committed when this returns; this
    /// process's senders (or another process's) send it. See [`crate::outbox`].
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when the bot has no outbox; otherwise as
    /// [`crate::outbox::Outbox::send`].
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn send(
        &self,
        message: crate::outbox::OutboxMessage,
    ) -> Result<crate::outbox::Queued, Error> {
        self.require_outbox()?.send(message).await
    }

    /// Queues campaign `campaign` in the bot's outbox: keys derived from the campaign and each
    /// recipient, so running it again queues only what is new. See
    /// [`crate::outbox::Outbox::send_many`].
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when the bot has no outbox; otherwise as
    /// [`crate::outbox::Outbox::send_many`].
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn send_many(
        &self,
        campaign: &str,
        messages: impl IntoIterator<Item = crate::outbox::OutboxMessage>,
    ) -> Result<crate::outbox::Queued, Error> {
        self.require_outbox()?.send_many(campaign, messages).await
    }

    #[cfg(feature = "postgres")]
    fn require_outbox(&self) -> Result<&crate::outbox::Outbox, Error> {
        self.outbox()
            .ok_or_else(|| Error::config("bot: no outbox; give the builder one with .outbox(..)"))
    }
}

/// Builds a [`Bot`].
#[must_use]
pub struct BotBuilder {
    adapters: Vec<Box<dyn Adapter>>,
    handler: Option<BoxHandler>,
    limits: Limits,
    queue: Option<Arc<dyn Queue>>,
    state_store: Option<Arc<dyn StateStore>>,
    app_state: TypeMap,
    outbounds: Vec<Arc<dyn Outbound>>,
    dead_letter_hook: Option<DeadLetterHook>,
    max_body_bytes: usize,
    request_timeout: Duration,
    server: crate::server::ServerSettings,
    #[cfg(feature = "postgres")]
    database: Option<crate::pg::PgPool>,
    #[cfg(feature = "postgres")]
    outbox: Option<crate::outbox::Outbox>,
    /// Whether the bot's telemetry is pushed to OTLP (not for a bot inside another).
    export_telemetry: bool,
}

impl Default for BotBuilder {
    fn default() -> Self {
        Self {
            adapters: Vec::new(),
            handler: None,
            limits: Limits::default(),
            queue: None,
            state_store: None,
            app_state: TypeMap::default(),
            outbounds: Vec::new(),
            dead_letter_hook: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            server: crate::server::ServerSettings::default(),
            #[cfg(feature = "postgres")]
            database: None,
            #[cfg(feature = "postgres")]
            outbox: None,
            export_telemetry: true,
        }
    }
}

impl fmt::Debug for BotBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotBuilder")
            .field("adapters", &self.adapters)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl BotBuilder {
    /// A bot inside another (an outbox's senders): its telemetry is not pushed to OTLP.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn unexported_telemetry(mut self) -> Self {
        self.export_telemetry = false;
        self
    }

    /// Gives the bot a durable outbox of proactive messages ([`crate::outbox`]): the bot runs
    /// its senders with its platforms' clients (started and stopped with the bot), offers
    /// [`Bot::send`], exports the outbox's metrics, and hands the outbox to handlers as shared
    /// state (`cx.state::<Outbox>()`).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn outbox(mut self, outbox: crate::outbox::Outbox) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// Adds a platform adapter.
    pub fn adapter(mut self, adapter: impl Adapter) -> Self {
        self.adapters.push(Box::new(adapter));
        self
    }

    /// Sets the handler every event goes to (usually a [`crate::Router`]).
    pub fn handler(mut self, handler: impl Handler) -> Self {
        self.handler = Some(BoxHandler::new(handler));
        self
    }

    /// Sets the limits (validated by [`BotBuilder::build`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Uses `queue` instead of a [`MemoryQueue`] built from the limits.
    pub fn queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Uses `store` for conversation state instead of a [`MemoryStateStore`].
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.state_store = Some(store);
        self
    }

    /// Shares `value` with every handler as `cx.state::<T>()`.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.app_state.insert(value);
        self
    }

    /// Registers an outbound client for its platform (adapters register theirs already).
    pub fn outbound(mut self, outbound: Arc<dyn Outbound>) -> Self {
        self.outbounds.push(outbound);
        self
    }

    /// Calls `hook` with every dead letter.
    ///
    /// The hook runs on the dispatcher: keep it quick (count, log, or hand the letter to a bounded
    /// channel for slow work such as an HTTP alert), or it delays every other event.
    pub fn on_dead_letter(mut self, hook: impl Fn(&DeadLetter) + Send + Sync + 'static) -> Self {
        self.dead_letter_hook = Some(Arc::new(hook));
        self
    }

    /// Gives handlers `cx.db()`: connections from `pool`, whose size and wait time-out bound
    /// them, with waits recorded as `bot.db.pool.wait` and the pool's figures exported as
    /// `db.client.connection.*`.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn database(mut self, pool: crate::pg::PgPool) -> Self {
        self.database = Some(pool);
        self
    }

    /// Limits webhook request bodies to `bytes` (413 above). Default 1 MiB.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Limits one HTTP request to `timeout` (408 after). Default 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` on `addr`, apart from the webhooks, whose
    /// port then serves none of them (default: the `BOT_OPS_ADDR` environment variable, else
    /// everything on one port). Keep that address private.
    pub fn ops_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.server.ops_addr = Some(addr);
        self
    }

    /// Open connections the server keeps at most (default 1024); further ones are answered 503
    /// and closed at once, and counted in `bot.server.connections.refused`.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.server.max_connections = connections;
        self
    }

    /// How long a connection may stay without a byte read or written before the server closes
    /// it (default 30 s): sockets that connect and say nothing cannot hold every one of
    /// [`BotBuilder::max_connections`] for ever. Keep it above `request_timeout`.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.server.idle_timeout = timeout;
        self
    }

    /// Requests the server handles at once (default 1024); further ones are answered 503 with
    /// `Retry-After` and counted in `bot.server.requests.refused`.
    pub fn max_concurrent_requests(mut self, requests: usize) -> Self {
        self.server.max_concurrent_requests = requests;
        self
    }

    /// Validates the configuration and builds the bot.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when no handler is set, the limits are invalid, the
    /// built-in queue's `reject_wait` is over half of `request_timeout`, two adapters serve the
    /// same platform, `BOT_OPS_ADDR` is not a socket address, a server limit is zero,
    /// or the telemetry cannot be set up.
    pub fn build(mut self) -> Result<Bot, Error> {
        self.limits.validate()?;
        self.server.resolve()?;
        let handler = self
            .handler
            .ok_or_else(|| Error::config("bot: no handler; call .handler(..)"))?;
        if self.max_body_bytes == 0 {
            return Err(Error::config("bot: max_body_bytes must be above zero"));
        }
        // A push into the built-in memory queue still waiting for room when the request times
        // out would be answered 408, without `Retry-After`, instead of 503 with it; the request
        // also reads its body and checks its signature within that time, hence the margin.
        // (A queue given with `.queue(..)` has its own settings.)
        if self.queue.is_none()
            && self.limits.overflow == crate::limits::Overflow::Reject
            && self.limits.reject_wait > self.request_timeout / 2
        {
            return Err(Error::config(
                "bot: limits.reject_wait must be at most half of request_timeout",
            ));
        }
        let queue = self
            .queue
            .unwrap_or_else(|| Arc::new(MemoryQueue::new(&self.limits)));
        let telemetry = if self.export_telemetry {
            Telemetry::new(queue.clone())?
        } else {
            Telemetry::unexported(queue.clone())?
        };
        let progress = Arc::new(Progress::default());
        let ingress = Ingress::new(queue.clone(), telemetry.clone(), progress.clone());
        let attach = Attach {
            telemetry: telemetry.clone(),
            ingress: ingress.clone(),
        };
        let mut outbounds: HashMap<Platform, Arc<dyn Outbound>> = HashMap::new();
        let mut clients = Clients::default();
        let mut seen = std::collections::HashSet::new();
        let mut adapters: Vec<Arc<dyn Adapter>> = Vec::with_capacity(self.adapters.len());
        for mut adapter in self.adapters {
            adapter.attach(&attach)?;
            let platform = adapter.platform();
            if !seen.insert(platform.clone()) {
                return Err(Error::config(format!(
                    "bot: two adapters for platform {platform}"
                )));
            }
            if let Some(o) = adapter.outbound() {
                outbounds.insert(o.platform(), o);
            }
            adapter.register_clients(&mut clients);
            adapters.push(Arc::from(adapter));
        }
        for o in self.outbounds {
            outbounds.insert(o.platform(), o);
        }
        #[cfg(feature = "postgres")]
        let outbox = match self.outbox {
            Some(outbox) => {
                let senders = outbox.senders_in_bot(outbounds.values().cloned())?;
                outbox.register_metrics(&telemetry);
                self.app_state.insert(outbox.clone());
                Some((outbox, senders))
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            outbounds,
            app_state: self.app_state,
            clients: clients.0,
            state_store: self
                .state_store
                .unwrap_or_else(|| Arc::new(MemoryStateStore::new())),
            #[cfg(feature = "postgres")]
            db: self.database.map(|pool| {
                let max_size = pool.stats().max_size;
                if self.limits.max_in_flight > max_size {
                    tracing::info!(
                        max_in_flight = self.limits.max_in_flight,
                        pool_size = max_size,
                        "more handlers may run than the pool has connections: handlers using \
                         cx.db() at once wait for one (measured as bot.db.pool.wait)"
                    );
                }
                pool.register_metrics(&telemetry);
                (pool, telemetry.clone())
            }),
        });
        let supervisor = Supervisor {
            queue: queue.clone(),
            handler,
            limits: self.limits.clone(),
            shared,
            metrics: telemetry.metrics().clone(),
            dead_letter_hook: self.dead_letter_hook,
            progress: progress.clone(),
            dead_letters_evicted: std::sync::atomic::AtomicU64::new(0),
        };
        Ok(Bot {
            inner: Arc::new(Inner {
                queue,
                limits: self.limits,
                telemetry,
                ingress,
                adapters,
                max_body_bytes: self.max_body_bytes,
                request_timeout: self.request_timeout,
                server: self.server,
                shutdown_requested: CancellationToken::new(),
                #[cfg(feature = "postgres")]
                outbox,
                progress,
                supervisor: Mutex::new(Some(supervisor)),
                run: Mutex::new(RunState::default()),
                report: tokio::sync::OnceCell::new(),
            }),
        })
    }
}
