//! [`FakeDiscordApi`]: the REST API on [`bot_core::testing::fake_api::FakeApi`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bot_core::testing::fake_api::{FakeApi, FakeRequest, FakeResponse};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{BOT_USER_ID, lock};

/// The fake REST API: messages, interaction callbacks, follow-ups, application commands and
/// `GET /gateway/bot`.
///
/// It keeps Discord's rules where tests need them: a bucket per route and top-level resource
/// with a limit per window ([`FakeDiscordApi::set_bucket_limit`]; 429 with `retry_after` past
/// it, and the `X-RateLimit-*` headers on every answer), and `enforce_nonce`: a message whose
/// nonce was seen in the channel is answered with the earlier message and not created again.
#[derive(Clone)]
pub struct FakeDiscordApi {
    api: FakeApi,
    rules: Arc<Mutex<RestRules>>,
}

struct RestRules {
    limit: u32,
    window: Duration,
    buckets: HashMap<String, (Instant, u32)>,
    nonces: HashMap<(String, String), Value>,
    created: Vec<(String, String)>,
    rate_limited: usize,
    feeds: Vec<mpsc::Sender<CreatedMessage>>,
    /// Registered commands by guild (`None`: global).
    commands: HashMap<Option<String>, Vec<Value>>,
    /// DM channels opened, by user.
    dms: HashMap<String, String>,
}

/// A message the fake REST API created, as [`FakeDiscordApi::message_feed`] hands it out.
#[derive(Debug, Clone)]
pub struct CreatedMessage {
    /// The channel id.
    pub channel: String,
    /// The `content`.
    pub content: String,
    /// When the request was answered.
    pub at: Instant,
}

impl fmt::Debug for FakeDiscordApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeDiscordApi")
            .field("api", &self.api)
            .finish()
    }
}

impl FakeDiscordApi {
    /// Starts the fake; calls must carry `Authorization: Bot <token>` (interaction callbacks and
    /// follow-ups need none, as on Discord). `gateway_url` is what `GET /gateway/bot` answers,
    /// with `shards` recommended and `max_concurrency` buckets. Buckets allow 50 requests per
    /// second until [`FakeDiscordApi::set_bucket_limit`] says otherwise.
    ///
    /// # Errors
    ///
    /// Fails when no port can be bound.
    pub async fn start(
        token: &str,
        gateway_url: &str,
        shards: u32,
        max_concurrency: u32,
    ) -> std::io::Result<Self> {
        let token = format!("Bot {token}");
        let gateway = json!({"url": gateway_url, "shards": shards, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 86_400_000_u64, "max_concurrency": max_concurrency}});
        let next_id = AtomicU64::new(1_200_000_000_000_000_000);
        let rules = Arc::new(Mutex::new(RestRules {
            dms: HashMap::new(),
            limit: 50,
            window: Duration::from_secs(1),
            buckets: HashMap::new(),
            nonces: HashMap::new(),
            created: Vec::new(),
            rate_limited: 0,
            feeds: Vec::new(),
            commands: HashMap::new(),
        }));
        let shared = rules.clone();
        let api =
            FakeApi::start(move |request| answer(&token, &gateway, &next_id, &shared, request))
                .await?;
        Ok(Self { api, rules })
    }

    /// Each bucket (route and channel, guild or webhook) allows `limit` requests per `window`.
    pub fn set_bucket_limit(&self, limit: u32, window: Duration) {
        let mut rules = lock(&self.rules);
        rules.limit = limit.max(1);
        rules.window = window;
        rules.buckets.clear();
    }

    /// How many requests the fake answered with 429.
    pub fn rate_limited(&self) -> usize {
        lock(&self.rules).rate_limited
    }

    /// The base URL to give the client (`DISCORD_API_BASE`).
    pub fn url(&self) -> String {
        self.api.url()
    }

    /// The underlying fake, to inject faults and latency or read calls.
    pub fn api(&self) -> &FakeApi {
        &self.api
    }

    /// Every message created from now on, as it is created, for load tests that measure when
    /// replies arrive. Holds up to `capacity` messages not yet received; past that, messages
    /// are left out of the feed (they are still created and listed by
    /// [`FakeDiscordApi::messages_in`]).
    pub fn message_feed(&self, capacity: usize) -> mpsc::Receiver<CreatedMessage> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        lock(&self.rules).feeds.push(tx);
        rx
    }

    /// The commands registered in `guild` (`None`: the global ones), as the fake stored them.
    pub fn commands(&self, guild: Option<&str>) -> Vec<Value> {
        lock(&self.rules)
            .commands
            .get(&guild.map(str::to_owned))
            .cloned()
            .unwrap_or_default()
    }

    /// The `content` of every message created in `channel`, in order (a repeated nonce creates
    /// nothing).
    pub fn messages_in(&self, channel: &str) -> Vec<String> {
        lock(&self.rules)
            .created
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, content)| content.clone())
            .collect()
    }
}

fn answer(
    token: &str,
    gateway: &Value,
    next_id: &AtomicU64,
    rules: &Mutex<RestRules>,
    request: &FakeRequest,
) -> FakeResponse {
    let path = request.path.as_str();
    let public = path.starts_with("/interactions/") || path.starts_with("/webhooks/");
    if !public && request.header("authorization") != Some(token) {
        return FakeResponse::json(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "401: Unauthorized", "code": 0}),
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let bucket = format!(
        "{} {}",
        request.method,
        segments
            .iter()
            .take(2)
            .copied()
            .collect::<Vec<_>>()
            .join("/")
    );
    let (limit, remaining, reset_after) = {
        let mut rules = lock(rules);
        let (limit, window) = (rules.limit, rules.window);
        let now = Instant::now();
        let entry = rules.buckets.entry(bucket.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        let reset_after = window.saturating_sub(now.duration_since(entry.0));
        if entry.1 >= limit {
            rules.rate_limited += 1;
            let seconds = reset_after.as_secs_f64();
            return FakeResponse::json(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"message": "You are being rate limited.", "retry_after": seconds, "global": false}),
            )
            .header("x-ratelimit-limit", limit.to_string())
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset-after", format!("{seconds:.3}"))
            .header("x-ratelimit-bucket", format!("fake-{bucket}"))
            .header("x-ratelimit-scope", "user");
        }
        entry.1 += 1;
        (limit, limit - entry.1, reset_after)
    };
    let id = next_id.fetch_add(1, Ordering::Relaxed).to_string();
    let body = request.json();
    let response = match (&request.method, segments.as_slice()) {
        (&Method::GET, ["gateway", "bot"]) => FakeResponse::json(StatusCode::OK, gateway),
        (&Method::POST, ["users", "@me", "channels"]) => {
            let Some(user) = body["recipient_id"].as_str().filter(|u| !u.is_empty()) else {
                return FakeResponse::json(
                    StatusCode::BAD_REQUEST,
                    &json!({"code": 50035, "message": "Invalid Form Body"}),
                );
            };
            // The same channel for a user on every call, as Discord answers.
            let channel = lock(rules)
                .dms
                .entry(user.to_owned())
                .or_insert_with(|| id.clone())
                .clone();
            FakeResponse::json(
                StatusCode::OK,
                &json!({"id": channel, "type": 1, "recipients": [{"id": user}]}),
            )
        }
        (&Method::POST, ["channels", channel, "messages"]) => {
            let content = body["content"].as_str().unwrap_or_default();
            if content.chars().count() > 2000 {
                return FakeResponse::json(
                    StatusCode::BAD_REQUEST,
                    &json!({"code": 50035, "message": "Invalid Form Body"}),
                );
            }
            let mut rules = lock(rules);
            let nonce = body["nonce"]
                .as_str()
                .filter(|_| body["enforce_nonce"] == true);
            let seen = nonce.and_then(|n| rules.nonces.get(&((*channel).to_owned(), n.to_owned())));
            match seen {
                Some(earlier) => FakeResponse::json(StatusCode::OK, earlier),
                None => {
                    let mut message = body.clone();
                    message["id"] = json!(id);
                    message["channel_id"] = json!(channel);
                    message["author"] = json!({"id": BOT_USER_ID, "bot": true});
                    if let Some(nonce) = nonce {
                        rules
                            .nonces
                            .insert(((*channel).to_owned(), nonce.to_owned()), message.clone());
                    }
                    rules
                        .created
                        .push(((*channel).to_owned(), content.to_owned()));
                    if !rules.feeds.is_empty() {
                        let created = CreatedMessage {
                            channel: (*channel).to_owned(),
                            content: content.to_owned(),
                            at: Instant::now(),
                        };
                        rules.feeds.retain(|feed| {
                            !matches!(
                                feed.try_send(created.clone()),
                                Err(mpsc::error::TrySendError::Closed(_))
                            )
                        });
                    }
                    FakeResponse::json(StatusCode::OK, &message)
                }
            }
        }
        (&Method::PATCH, ["channels", channel, "messages", message]) => {
            let mut edited = body.clone();
            edited["id"] = json!(message);
            edited["channel_id"] = json!(channel);
            FakeResponse::json(StatusCode::OK, &edited)
        }
        (&Method::POST, ["channels", _, "typing"]) => FakeResponse::empty(StatusCode::NO_CONTENT),
        (&Method::PUT, ["applications", app, "commands"]) => {
            overwrite_commands(&mut lock(rules), next_id, app, None, &body)
        }
        (&Method::GET, ["applications", _, "commands"]) => list_commands(&lock(rules), None),
        (&Method::PUT, ["applications", app, "guilds", guild, "commands"]) => {
            overwrite_commands(&mut lock(rules), next_id, app, Some(guild), &body)
        }
        (&Method::GET, ["applications", _, "guilds", guild, "commands"]) => {
            list_commands(&lock(rules), Some(guild))
        }
        (&Method::DELETE, ["applications", _, "guilds", guild, "commands", command]) => {
            let mut rules = lock(rules);
            let registered = rules.commands.entry(Some((*guild).to_owned())).or_default();
            let before = registered.len();
            registered.retain(|c| c["id"] != *command);
            if registered.len() < before {
                FakeResponse::empty(StatusCode::NO_CONTENT)
            } else {
                FakeResponse::json(
                    StatusCode::NOT_FOUND,
                    &json!({"message": "Unknown application command", "code": 10063}),
                )
            }
        }
        (&Method::POST, ["interactions", _, _, "callback"]) => {
            FakeResponse::empty(StatusCode::NO_CONTENT)
        }
        (&Method::POST, ["webhooks", _, _]) => {
            let mut message = body.clone();
            message["id"] = json!(id);
            FakeResponse::json(StatusCode::OK, &message)
        }
        (&Method::PATCH, ["webhooks", _, _, "messages", "@original"]) => {
            FakeResponse::json(StatusCode::OK, &body)
        }
        _ => FakeResponse::json(
            StatusCode::NOT_FOUND,
            &json!({"message": "404: Not Found", "code": 0}),
        ),
    };
    response
        .header("x-ratelimit-limit", limit.to_string())
        .header("x-ratelimit-remaining", remaining.to_string())
        .header(
            "x-ratelimit-reset-after",
            format!("{:.3}", reset_after.as_secs_f64()),
        )
        .header("x-ratelimit-bucket", format!("fake-{bucket}"))
}

/// Replaces the commands of `guild` (or the global ones) as Discord does: a command of the same
/// name and type keeps its id, the others get new ones, those left out are gone.
fn overwrite_commands(
    rules: &mut RestRules,
    next_id: &AtomicU64,
    application: &str,
    guild: Option<&str>,
    body: &Value,
) -> FakeResponse {
    let invalid = || {
        FakeResponse::json(
            StatusCode::BAD_REQUEST,
            &json!({"code": 50035, "message": "Invalid Form Body"}),
        )
    };
    let Some(commands) = body.as_array() else {
        return invalid();
    };
    let key = guild.map(str::to_owned);
    let earlier = rules.commands.remove(&key).unwrap_or_default();
    let mut registered = Vec::with_capacity(commands.len());
    for command in commands {
        let Some(name) = command["name"].as_str().filter(|n| !n.is_empty()) else {
            rules.commands.insert(key, earlier);
            return invalid();
        };
        let kind = command["type"].as_u64().unwrap_or(1);
        let id = earlier
            .iter()
            .find(|c| c["name"] == name && c["type"] == kind)
            .map_or_else(
                || next_id.fetch_add(1, Ordering::Relaxed).to_string(),
                |c| c["id"].as_str().unwrap_or_default().to_owned(),
            );
        let mut stored = command.clone();
        stored["id"] = json!(id);
        stored["type"] = json!(kind);
        stored["application_id"] = json!(application);
        stored["version"] = json!(next_id.fetch_add(1, Ordering::Relaxed).to_string());
        if let Some(guild) = guild {
            stored["guild_id"] = json!(guild);
        }
        registered.push(stored);
    }
    rules.commands.insert(key, registered.clone());
    FakeResponse::json(StatusCode::OK, &Value::Array(registered))
}

fn list_commands(rules: &RestRules, guild: Option<&str>) -> FakeResponse {
    let registered = rules
        .commands
        .get(&guild.map(str::to_owned))
        .cloned()
        .unwrap_or_default();
    FakeResponse::json(StatusCode::OK, &Value::Array(registered))
}
