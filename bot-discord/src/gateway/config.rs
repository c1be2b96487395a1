//! Shard configuration: token, intents, URL, compression, reconnection timing.

use std::fmt;
use std::ops::BitOr;
use std::str::FromStr;
use std::time::Duration;

use bot_core::Secret;
use bot_core::event::ChannelId;

use crate::error::Error;
use crate::event::DispatchContext;

/// Gateway intents: which events Discord sends.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Intents(u64);

impl Intents {
    /// Guild create/update/delete, channels, roles.
    pub const GUILDS: Intents = Intents(1 << 0);
    /// Member add/update/remove (privileged).
    pub const GUILD_MEMBERS: Intents = Intents(1 << 1);
    /// Presence updates (privileged).
    pub const GUILD_PRESENCES: Intents = Intents(1 << 8);
    /// Messages in guild channels.
    pub const GUILD_MESSAGES: Intents = Intents(1 << 9);
    /// Reactions in guild channels.
    pub const GUILD_MESSAGE_REACTIONS: Intents = Intents(1 << 10);
    /// Direct messages.
    pub const DIRECT_MESSAGES: Intents = Intents(1 << 12);
    /// Reactions in direct messages.
    pub const DIRECT_MESSAGE_REACTIONS: Intents = Intents(1 << 13);
    /// Message content in guilds (privileged): without it `content` is empty but in DMs and
    /// mentions of the bot.
    pub const MESSAGE_CONTENT: Intents = Intents(1 << 15);

    /// What a message bot needs: guilds, guild and direct messages with their reactions, and
    /// message content.
    pub const MESSAGES: Intents = Intents(
        Self::GUILDS.0
            | Self::GUILD_MESSAGES.0
            | Self::GUILD_MESSAGE_REACTIONS.0
            | Self::DIRECT_MESSAGES.0
            | Self::DIRECT_MESSAGE_REACTIONS.0
            | Self::MESSAGE_CONTENT.0,
    );

    const NAMES: [(&'static str, Intents); 8] = [
        ("GUILDS", Self::GUILDS),
        ("GUILD_MEMBERS", Self::GUILD_MEMBERS),
        ("GUILD_PRESENCES", Self::GUILD_PRESENCES),
        ("GUILD_MESSAGES", Self::GUILD_MESSAGES),
        ("GUILD_MESSAGE_REACTIONS", Self::GUILD_MESSAGE_REACTIONS),
        ("DIRECT_MESSAGES", Self::DIRECT_MESSAGES),
        ("DIRECT_MESSAGE_REACTIONS", Self::DIRECT_MESSAGE_REACTIONS),
        ("MESSAGE_CONTENT", Self::MESSAGE_CONTENT),
    ];

    /// Intents from their bits.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The bits sent in Identify.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every intent of `other` is in `self`.
    pub const fn contains(self, other: Intents) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Intents {
    type Output = Intents;
    fn bitor(self, rhs: Intents) -> Intents {
        Intents(self.0 | rhs.0)
    }
}

impl fmt::Debug for Intents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(_, i)| self.contains(*i))
            .map(|(n, _)| *n)
            .collect();
        write!(f, "Intents({} = {})", self.0, names.join("|"))
    }
}

impl FromStr for Intents {
    type Err = Error;

    /// A number (`37377`) or names joined by `|` or `,` (`GUILD_MESSAGES|MESSAGE_CONTENT`).
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if let Ok(bits) = s.parse::<u64>() {
            return Ok(Intents(bits));
        }
        s.split(['|', ','])
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .try_fold(Intents(0), |acc, name| {
                let upper = name.to_ascii_uppercase();
                Self::NAMES
                    .iter()
                    .find(|(n, _)| *n == upper)
                    .map(|(_, i)| acc | *i)
                    .ok_or_else(|| Error::config(format!("discord: unknown intent {name:?}")))
            })
    }
}

/// Which shard of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardId {
    /// This shard's number, from 0.
    pub number: u32,
    /// Shards in all.
    pub total: u32,
}

impl ShardId {
    /// The only shard of a small bot.
    pub const ONE: ShardId = ShardId {
        number: 0,
        total: 1,
    };

    /// Shard `number` of `total`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] unless `number < total`.
    pub fn new(number: u32, total: u32) -> Result<Self, Error> {
        if number >= total {
            return Err(Error::config(format!(
                "discord: shard {number} is not below the total {total}"
            )));
        }
        Ok(Self { number, total })
    }

    /// The shard that receives events of `guild_id`: `(guild_id >> 22) % total`.
    pub fn for_guild(guild_id: u64, total: u32) -> u32 {
        u32::try_from((guild_id >> 22) % u64::from(total.max(1))).unwrap_or(0)
    }
}

/// How a shard connects and reconnects.
#[derive(Clone)]
#[non_exhaustive]
pub struct ShardConfig {
    /// The bot token.
    pub token: Secret,
    /// The intents to identify with.
    pub intents: Intents,
    /// The gateway URL (from `GET /gateway/bot`, or `DISCORD_GATEWAY_URL`), without query.
    pub url: String,
    /// Whether to ask for `compress=zlib-stream` transport compression.
    pub compress: bool,
    /// First reconnection delay after a failure; doubles up to `max_backoff`, with jitter.
    pub initial_backoff: Duration,
    /// Longest reconnection delay.
    pub max_backoff: Duration,
    /// The random wait before identifying again after an invalid session, low and high.
    pub invalid_session_wait: (Duration, Duration),
    /// How long to wait for Hello (and for the connection) before trying again.
    pub hello_timeout: Duration,
    /// Whether messages by bots (the bot itself included) reach the handlers. Default false.
    pub deliver_bot_messages: bool,
    /// `large_threshold` of Identify (50 to 250).
    pub large_threshold: u8,
    /// The WebSocket read buffer per connection. Default 16 KiB: small, since a bot may run
    /// many mostly idle shards; larger messages still arrive whole (up to 64 MiB).
    pub read_buffer_bytes: usize,
    /// The first and the longest wait before offering a dispatch again to a queue that failed
    /// (not full: unavailable, read-only, ...). Default 100 ms doubling up to 5 s.
    pub queue_retry_backoff: (Duration, Duration),
    /// The longest wait before identifying again after invalid sessions in a row: the wait
    /// after an invalid session doubles with each one that follows a short-lived session.
    /// Default 5 minutes.
    pub max_invalid_session_wait: Duration,
    /// Most dispatches handed to the queue in one batch. Default 256. The shard keeps reading
    /// while a batch is offered, into the next one; once that one is full it is mapped at once
    /// and submitted after the first is accepted, while the shard reads into a third; once that
    /// one is full too, it reads nothing until the first is accepted: at most three batches are
    /// read and not yet accepted.
    pub max_batch_dispatches: usize,
    /// Most bytes of dispatch data (JSON text) in one batch. Default 1 MiB.
    pub max_batch_bytes: usize,
    /// The application these shards serve, when known: their events carry it as their
    /// [`bot_core::EventData::channel`] (set by the adapter from its application id).
    pub application: Option<ChannelId>,
    /// Whether event ids are scoped to the application (see
    /// [`crate::event::DispatchContext::scoped_ids`]): set by the adapter when it serves several,
    /// or as [`crate::DiscordBuilder::scoped_event_ids`] says.
    pub scoped_event_ids: bool,
}

impl fmt::Debug for ShardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardConfig")
            .field("intents", &self.intents)
            .field("url", &self.url)
            .field("compress", &self.compress)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("invalid_session_wait", &self.invalid_session_wait)
            .field("deliver_bot_messages", &self.deliver_bot_messages)
            .field("max_batch_dispatches", &self.max_batch_dispatches)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("application", &self.application)
            .finish_non_exhaustive()
    }
}

impl ShardConfig {
    /// Defaults for `token`: the message intents, Discord's gateway URL, no compression,
    /// reconnections from 1 s up to 60 s, 1-5 s after an invalid session.
    pub fn new(token: impl Into<Secret>) -> Self {
        Self {
            token: token.into(),
            intents: Intents::MESSAGES,
            url: crate::DEFAULT_GATEWAY_URL.to_owned(),
            compress: false,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            invalid_session_wait: (Duration::from_secs(1), Duration::from_secs(5)),
            hello_timeout: Duration::from_secs(20),
            deliver_bot_messages: false,
            large_threshold: 50,
            read_buffer_bytes: 16 * 1024,
            queue_retry_backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            max_invalid_session_wait: Duration::from_secs(5 * 60),
            max_batch_dispatches: 256,
            max_batch_bytes: 1024 * 1024,
            application: None,
            scoped_event_ids: false,
        }
    }

    /// Sets the intents.
    #[must_use]
    pub fn intents(mut self, intents: Intents) -> Self {
        self.intents = intents;
        self
    }

    /// Sets the gateway URL.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Asks for zlib-stream transport compression.
    #[must_use]
    pub fn compress(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// Sets the reconnection backoff.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// Sets the random wait before identifying again after an invalid session.
    #[must_use]
    pub fn invalid_session_wait(mut self, low: Duration, high: Duration) -> Self {
        self.invalid_session_wait = (low, high.max(low));
        self
    }

    /// Sets the WebSocket read buffer of each connection (default 16 KiB; 128 KiB reads a busy
    /// shard's stream in fewer system calls).
    #[must_use]
    pub fn read_buffer_bytes(mut self, bytes: usize) -> Self {
        self.read_buffer_bytes = bytes.max(1024);
        self
    }

    /// Sets the longest wait before identifying again after invalid sessions in a row.
    #[must_use]
    pub fn max_invalid_session_wait(mut self, max: Duration) -> Self {
        self.max_invalid_session_wait = max;
        self
    }

    /// Sets the back-off of dispatches offered again to a failing queue: `initial`, doubling up
    /// to `max`.
    #[must_use]
    pub fn queue_retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.queue_retry_backoff = (initial, max.max(initial));
        self
    }

    /// Sets the bounds of one batch of dispatches handed to the queue (at least one dispatch
    /// and one byte): a smaller batch holds less unaccepted, a larger one costs less per dispatch.
    #[must_use]
    pub fn hand_over_batch(mut self, max_dispatches: usize, max_bytes: usize) -> Self {
        self.max_batch_dispatches = max_dispatches.max(1);
        self.max_batch_bytes = max_bytes.max(1);
        self
    }

    /// Delivers messages by bots (the bot itself included) to the handlers.
    #[must_use]
    pub fn deliver_bot_messages(mut self, deliver: bool) -> Self {
        self.deliver_bot_messages = deliver;
        self
    }

    /// The readiness component of shard `id`: `discord shard 0/2`, followed by the application
    /// when the adapter serves several (`discord shard 0/2 of 1100000000000000002`).
    pub(crate) fn part_name(&self, id: ShardId) -> String {
        match self.application.as_ref().filter(|_| self.scoped_event_ids) {
            Some(application) => {
                format!("discord shard {}/{} of {application}", id.number, id.total)
            }
            None => format!("discord shard {}/{}", id.number, id.total),
        }
    }

    /// What mapping this shard's dispatches starts from, before READY.
    pub(crate) fn dispatch_context(&self) -> DispatchContext {
        DispatchContext {
            deliver_bot_messages: self.deliver_bot_messages,
            channel: self.application.clone(),
            scoped_ids: self.scoped_event_ids,
            ..DispatchContext::default()
        }
    }

    /// The delay before reconnection attempt `failures` (1 for the first failure).
    pub(crate) fn backoff_for(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        let base = self
            .initial_backoff
            .saturating_mul(1 << exp)
            .min(self.max_backoff);
        // Up to a fifth less, so that shards dropped together do not reconnect together.
        base.mul_f64(1.0 - 0.2 * fastrand::f64())
    }

    pub(crate) fn invalid_session_delay(&self) -> Duration {
        let (low, high) = self.invalid_session_wait;
        low + (high - low).mul_f64(fastrand::f64())
    }

    /// The wait before identifying after the `streak`-th invalid session in a row (from 1):
    /// the random wait, doubled for each before it, up to `max_invalid_session_wait`.
    pub(crate) fn invalid_session_backoff(&self, wait: Duration, streak: u32) -> Duration {
        let doubled = wait.saturating_mul(1 << streak.saturating_sub(1).min(20));
        doubled.min(self.max_invalid_session_wait.max(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_of_one_of_several_applications_is_named_with_it() {
        let id = ShardId::new(0, 2).unwrap();
        let mut config = ShardConfig::new("t");
        assert_eq!(config.part_name(id), "discord shard 0/2");
        config.application = Some(ChannelId::new("11"));
        assert_eq!(
            config.part_name(id),
            "discord shard 0/2",
            "one application: unchanged"
        );
        config.scoped_event_ids = true;
        assert_eq!(config.part_name(id), "discord shard 0/2 of 11");
        let context = config.dispatch_context();
        assert_eq!(context.channel, Some(ChannelId::new("11")));
        assert!(context.scoped_ids);
    }

    #[test]
    fn intents_parse_from_numbers_and_names() {
        assert_eq!("513".parse::<Intents>().unwrap().bits(), 513);
        let named: Intents = "guild_messages | MESSAGE_CONTENT".parse().unwrap();
        assert_eq!(named, Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT);
        assert!("GUILD_MESAGES".parse::<Intents>().is_err());
        assert!(format!("{:?}", Intents::MESSAGES).contains("MESSAGE_CONTENT"));
    }

    #[test]
    fn guilds_map_to_shards_and_backoff_is_capped() {
        assert_eq!(ShardId::for_guild(41_771_983_423_143_937, 1), 0);
        assert_eq!(ShardId::for_guild(41_771_983_423_143_937 << 1, 2), 0);
        assert!(ShardId::new(2, 2).is_err());
        let c = ShardConfig::new("t").backoff(Duration::from_secs(1), Duration::from_secs(8));
        assert!(
            c.backoff_for(1) <= Duration::from_secs(1)
                && c.backoff_for(1) >= Duration::from_millis(800)
        );
        assert!(
            c.backoff_for(30) <= Duration::from_secs(8)
                && c.backoff_for(30) >= Duration::from_millis(6400)
        );
    }
}
