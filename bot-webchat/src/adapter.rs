//! [`WebChat`]: the adapter that plugs the socket endpoint, the backend API and the client into
//! a bot.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::routing::{get, post};
use bot_core::adapter::{Attach, Clients};
use bot_core::{Adapter, Ingress, Outbound, Platform, Secret};
use tokio_util::sync::CancellationToken;

use crate::api::{self, Api};
use crate::client::WebChatClient;
use crate::config::{ENV_ADDR, ENV_PATH, ENV_SECRET, WebChatConfig};
use crate::error::Error;
use crate::fanout::{Fanout, LocalDelivery};
use crate::hub::Hub;
use crate::metrics::Stats;
use crate::protocol::CloseReason;
use crate::render::PLATFORM;
use crate::socket::{self, Shared};
use crate::{token, widget};

/// The web chat adapter: the WebSocket endpoint at `GET /webchat/ws`, the backend API under
/// `/webchat/api/`, and the [`WebChatClient`] that answers.
///
/// Cloning is cheap; clones share the sockets.
///
/// # Examples
///
/// ```no_run
/// use bot_core::{Bot, Context, Error, Event};
/// use bot_webchat::WebChat;
///
/// async fn echo(cx: Context, event: Event) -> Result<(), Error> {
///     cx.reply(event.text_content().unwrap_or_default()).await
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bot = Bot::builder().adapter(WebChat::from_env()?).handler(echo).build()?;
/// bot.serve("0.0.0.0:8080").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WebChat {
    hub: Arc<Hub>,
    /// Where web chat's own server listens, once bound.
    bound: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    secret: Secret,
    client: WebChatClient,
    fanout: Option<Arc<dyn Fanout>>,
    #[cfg(feature = "postgres")]
    cluster: Option<crate::pg::PgCluster>,
}

/// Builds a [`WebChat`] adapter.
#[derive(Debug, Clone)]
#[must_use]
pub struct WebChatBuilder {
    secret: Secret,
    config: WebChatConfig,
    fanout: Option<Arc<dyn Fanout>>,
    #[cfg(feature = "postgres")]
    cluster: Option<crate::pg::PgCluster>,
}

impl WebChatBuilder {
    /// Replaces every limit and timing at once.
    pub fn config(mut self, config: WebChatConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves under `path` instead of `/webchat`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }

    /// How often browsers send a heartbeat, and how long a silent socket lives.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.heartbeat_interval = interval;
        self.config.heartbeat_timeout = timeout;
        self
    }

    /// The largest frame a browser may send, in bytes.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.config.max_frame_bytes = bytes;
        self
    }

    /// The most bytes that may wait for one socket before it is closed as a slow reader.
    pub fn max_outbound_bytes(mut self, bytes: usize) -> Self {
        self.config.max_outbound_bytes = bytes;
        self
    }

    /// Serves web chat on an address of its own (see [`WebChatConfig::listen`]).
    pub fn listen(mut self, addr: std::net::SocketAddr) -> Self {
        self.config.listen = Some(addr);
        self
    }

    /// Serves the demo page at `{path}/demo` (see [`WebChatConfig::demo`]).
    pub fn demo(mut self, demo: bool) -> Self {
        self.config.demo = demo;
        self
    }

    /// Delivers to the users' sockets on other nodes through `fanout` too.
    pub fn fanout(mut self, fanout: Arc<dyn Fanout>) -> Self {
        self.fanout = Some(fanout);
        self
    }

    /// Joins the nodes that share `cluster`'s PostgreSQL: replies reach a user's sockets on
    /// every node (`LISTEN/NOTIFY`), presence is written there, and so is the history: each
    /// user's messages are numbered cluster-wide, so a browser resumes exactly on any node.
    /// Run [`crate::pg::PgCluster::migrate`] once before.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn cluster(mut self, cluster: crate::pg::PgCluster) -> Self {
        self.fanout = Some(Arc::new(cluster.clone()));
        self.cluster = Some(cluster);
        self
    }

    /// Builds the adapter.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when the secret is empty or a limit is out of range
    /// ([`WebChatConfig::validate`]).
    pub fn build(self) -> Result<WebChat, Error> {
        if self.secret.is_empty() {
            return Err(Error::config("webchat: the secret is empty"));
        }
        self.config.validate()?;
        let hub = Hub::new(self.config);
        // With a cluster the history is in PostgreSQL, numbered cluster-wide.
        #[cfg(feature = "postgres")]
        let hub = if self.cluster.is_some() {
            hub.number_cluster_wide()
        } else {
            hub
        };
        let hub = Arc::new(hub);
        Ok(WebChat {
            bound: Arc::default(),
            client: WebChatClient::new(
                hub.clone(),
                self.fanout.clone(),
                #[cfg(feature = "postgres")]
                self.cluster.clone(),
            ),
            hub,
            secret: self.secret,
            fanout: self.fanout,
            #[cfg(feature = "postgres")]
            cluster: self.cluster,
        })
    }
}

impl WebChat {
    /// Starts an adapter whose tokens and backend API use `secret`.
    pub fn builder(secret: impl Into<Secret>) -> WebChatBuilder {
        WebChatBuilder {
            secret: secret.into(),
            config: WebChatConfig::default(),
            fanout: None,
            #[cfg(feature = "postgres")]
            cluster: None,
        }
    }

    /// An adapter configured from `WEBCHAT_SECRET`, and optionally `WEBCHAT_PATH` and
    /// `WEBCHAT_ADDR`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when `WEBCHAT_SECRET` is missing or a value is invalid.
    pub fn from_env() -> Result<Self, Error> {
        Self::try_from_env()?.ok_or_else(|| Error::config(format!("webchat: set {ENV_SECRET}")))
    }

    /// As [`WebChat::from_env`]; `Ok(None)` when `WEBCHAT_SECRET` is not set, for bots that
    /// serve whichever platforms are configured.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when a value is invalid.
    pub fn try_from_env() -> Result<Option<Self>, Error> {
        Self::try_builder_from_env()?
            .map(WebChatBuilder::build)
            .transpose()
    }

    /// The builder [`WebChat::try_from_env`] builds, for settings the environment does not
    /// give (a cluster); `Ok(None)` when `WEBCHAT_SECRET` is not set.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when `WEBCHAT_ADDR` is not an address, or a variable is
    /// misspelt (close to one of [`crate::ENV_VARS`]).
    pub fn try_builder_from_env() -> Result<Option<WebChatBuilder>, Error> {
        bot_core::env::check_spelling("webchat", crate::ENV_VARS)
            .map_err(|e| Error::config(e.to_string()))?;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(secret) = var(ENV_SECRET) else {
            return Ok(None);
        };
        let mut builder = Self::builder(secret);
        if let Some(path) = var(ENV_PATH) {
            builder = builder.path(path);
        }
        if let Some(addr) = var(ENV_ADDR) {
            let addr = addr.parse().map_err(|_| {
                Error::config(format!("webchat: {ENV_ADDR} {addr:?} is not an address"))
            })?;
            builder = builder.listen(addr);
        }
        Ok(Some(builder))
    }

    /// The client that sends to web chat users.
    pub fn client(&self) -> &WebChatClient {
        &self.client
    }

    /// Issues a user token for `user`, valid for `ttl` (what the backend API does).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Invalid`] when `user` is not a valid user id.
    pub fn issue_token(&self, user: &str, ttl: Duration) -> Result<String, Error> {
        token::issue(&self.secret, user, ttl)
    }

    /// The adapter's counters on this node.
    pub fn stats(&self) -> Stats {
        #[allow(unused_mut)]
        let mut stats = self.hub.counters.snapshot(self.hub.open_sockets() as u64);
        #[cfg(feature = "postgres")]
        if let Some(cluster) = &self.cluster {
            stats.history_errors = cluster.history_errors();
            stats.history_batches = cluster.history_batches();
            stats.history_catch_ups = cluster.history_catch_ups();
            stats.history_retries = cluster.history_retries();
            stats.seqs_pruned = cluster.seqs_pruned();
        }
        stats
    }

    /// The address web chat's own server listens on, once bound (with
    /// [`WebChatConfig::listen`]; port 0 picks a free one).
    pub fn own_addr(&self) -> Option<std::net::SocketAddr> {
        self.bound.get().copied()
    }

    /// The demo page's path, when it is served.
    pub fn demo_path(&self) -> Option<String> {
        self.hub
            .config
            .demo
            .then(|| format!("{}/demo", self.hub.config.path))
    }

    /// The path prefix of the adapter's routes.
    pub fn path(&self) -> &str {
        &self.hub.config.path
    }

    /// The limits and timings.
    pub fn config(&self) -> &WebChatConfig {
        &self.hub.config
    }
}

impl WebChat {
    /// Every route: the socket endpoint, the backend API, the widget (and the demo page).
    fn router(&self, ingress: Ingress) -> axum::Router {
        let path = &self.hub.config.path;
        let shared = Arc::new(Shared {
            hub: self.hub.clone(),
            ingress: ingress.clone(),
            secret: self.secret.clone(),
            #[cfg(feature = "postgres")]
            history: self.cluster.clone(),
        });
        let api = Arc::new(Api {
            secret: self.secret.clone(),
            ingress,
            client: self.client.clone(),
            max_token_ttl: self.hub.config.max_token_ttl,
        });
        let sockets = axum::Router::new()
            .route(&format!("{path}/ws"), get(socket::upgrade))
            .with_state(shared);
        let backend = axum::Router::new()
            .route(&format!("{path}/api/tokens"), post(api::issue_token))
            .route(&format!("{path}/api/messages"), post(api::send_message))
            .with_state(api);
        let mut widget =
            axum::Router::new().route(&format!("{path}/widget.js"), get(widget::widget));
        if self.hub.config.demo {
            widget = widget.merge(
                axum::Router::new()
                    .route(&format!("{path}/demo"), get(widget::demo))
                    .with_state(Arc::new(self.secret.clone())),
            );
        }
        sockets.merge(backend).merge(widget)
    }

    /// Serves [`WebChat::router`] on the configured address until `shutdown`.
    async fn serve_own(
        &self,
        addr: std::net::SocketAddr,
        ingress: Ingress,
        shutdown: CancellationToken,
    ) {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(%addr, error = %e, "webchat: cannot listen");
                return;
            }
        };
        let addr = listener.local_addr().unwrap_or(addr);
        let _ = self.bound.set(addr);
        tracing::info!(%addr, "webchat listening");
        let app = self.router(ingress);
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(%addr, error = %e, "webchat: the server failed");
        }
    }
}

#[async_trait]
impl Adapter for WebChat {
    fn platform(&self) -> Platform {
        PLATFORM
    }

    fn outbound(&self) -> Option<Arc<dyn Outbound>> {
        Some(Arc::new(self.client.clone()))
    }

    fn register_clients(&self, clients: &mut Clients) {
        clients.insert(Arc::new(self.client.clone()));
    }

    /// The counters are recorded in the bot's telemetry from then on (with a cluster, its
    /// history errors and batches too: `bot.webchat.history.errors`, `.batches`).
    fn attach(&mut self, bot: &Attach) -> Result<(), bot_core::Error> {
        self.hub
            .counters
            .attach(bot.telemetry(), Arc::downgrade(&self.hub));
        #[cfg(feature = "postgres")]
        if let Some(cluster) = &self.cluster {
            cluster.register_metrics(bot.telemetry());
        }
        Ok(())
    }

    /// Web chat's routes on the bot's server, unless it has an address of its own.
    fn routes(&self, ingress: Ingress) -> Option<axum::Router> {
        if self.hub.config.listen.is_some() {
            return None;
        }
        Some(self.router(ingress))
    }

    /// The sweeper (one loop that enforces every socket's join and heartbeat time-outs), the
    /// fan-out's receiver, the presence and history writers and web chat's own server when it
    /// has an address, all in this one task. At shutdown every
    /// socket is closed with 1001 (going away) and this node's presence removed.
    async fn run(
        &self,
        ingress: Ingress,
        shutdown: CancellationToken,
    ) -> Result<(), bot_core::Error> {
        let own_server = async {
            if let Some(addr) = self.hub.config.listen {
                self.serve_own(addr, ingress, shutdown.clone()).await;
            }
        };
        let sweeper = async {
            let mut tick = tokio::time::interval(self.hub.config.sweep_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    now = tick.tick() => self.hub.sweep(now),
                    () = shutdown.cancelled() => {
                        self.hub.close_all(CloseReason::GoingAway);
                        return;
                    }
                }
            }
        };
        let fanout = async {
            if let Some(fanout) = &self.fanout {
                let local = LocalDelivery::new(self.hub.clone());
                if let Err(e) = fanout.run(local, shutdown.clone()).await {
                    tracing::error!(error = %e, "webchat: the fan-out stopped");
                }
            }
        };
        let presence = async {
            #[cfg(feature = "postgres")]
            if let Some(cluster) = &self.cluster {
                cluster
                    .run_presence(self.hub.clone(), shutdown.clone())
                    .await;
            }
        };
        let history = async {
            #[cfg(feature = "postgres")]
            if let Some(cluster) = &self.cluster {
                (cluster.run_history(self.hub.clone(), self.fanout.clone(), shutdown.clone()))
                    .await;
            }
        };
        tokio::join!(own_server, sweeper, fanout, presence, history);
        Ok(())
    }
}
