//! [`WebChatConfig`]: the adapter's limits and timings, with defaults and validation.

use std::time::Duration;

use crate::error::Error;

/// The environment variable with the secret that signs user tokens and authorises the backend
/// API.
pub const ENV_SECRET: &str = "WEBCHAT_SECRET";
/// The environment variable with the path prefix (default `/webchat`).
pub const ENV_PATH: &str = "WEBCHAT_PATH";
/// The environment variable with an address of web chat's own (`0.0.0.0:8081`): see
/// [`WebChatConfig::listen`].
pub const ENV_ADDR: &str = "WEBCHAT_ADDR";
/// Every variable [`crate::WebChat::from_env`] reads: a variable whose name is close to one of
/// them but none is an error, not ignored.
pub const ENV_VARS: &[&str] = &[ENV_SECRET, ENV_PATH, ENV_ADDR];

/// The adapter's limits and timings. Every field has a default; [`crate::WebChatBuilder::build`]
/// checks them.
#[derive(Debug, Clone)]
pub struct WebChatConfig {
    /// The path prefix of every route: `{path}/ws`, `{path}/api/...`. Default `/webchat`.
    pub path: String,
    /// The largest frame (and message) a browser may send, in bytes; a larger one closes its
    /// socket with 4006. Default 16 KiB.
    pub max_frame_bytes: usize,
    /// The most bytes of frames waiting for one socket; past it the socket is closed as a slow
    /// reader (4007). Default 256 KiB.
    pub max_outbound_bytes: usize,
    /// How often the browser sends a heartbeat (told in the welcome). Default 20 s: keep it under
    /// the bot server's idle time-out (30 s by default), which closes silent TCP connections.
    pub heartbeat_interval: Duration,
    /// How long a joined socket may send nothing before it is closed (4008). Default 45 s.
    pub heartbeat_timeout: Duration,
    /// How long a socket may stay without joining (4003). Default 10 s.
    pub join_timeout: Duration,
    /// How often the one sweeper checks every socket's time-outs and drops expired histories.
    /// Default 1 s; a time-out fires up to this much late.
    pub sweep_interval: Duration,
    /// How many of its latest messages each user's history keeps for resume. Default 100.
    pub history_messages: usize,
    /// How many bytes of frames each user's history keeps at most. Default 64 KiB.
    pub history_bytes: usize,
    /// How long the history of a user with no open socket is kept. Default 10 minutes.
    pub resume_window: Duration,
    /// How many users without an open socket may have a history at once; past it, messages to
    /// further offline users are not kept (counted). Default 100,000.
    pub max_offline_users: usize,
    /// The most bytes one read of a socket takes, and the read buffer a socket starts with.
    /// Default 64 bytes. tungstenite grows the buffer to hold a whole frame and keeps it, so a
    /// socket holds about this plus its largest frame so far; a larger value reads big frames
    /// in fewer calls but costs more per idle socket (256: the 140-byte join frame grew the
    /// buffer to 512 bytes, as tungstenite makes room for the payload on top of what it read).
    pub read_buffer_bytes: usize,
    /// Whether the user's typing frames reach the handlers as `EventKind::Other { name:
    /// "typing" }`. Default false (counted as skipped).
    pub deliver_typing: bool,
    /// The longest lifetime the backend API gives a token. Default 24 hours.
    pub max_token_ttl: Duration,
    /// An address where web chat serves its routes itself, instead of on the bot's server:
    /// sockets there have no per-connection idle timer and no cap of the bot's
    /// `max_connections` (only [`WebChatConfig::max_sockets`]), which is how one process holds
    /// tens of thousands. Default none.
    pub listen: Option<std::net::SocketAddr>,
    /// The most sockets open at once on this node; an upgrade past it is answered 503.
    /// Default 50,000.
    pub max_sockets: usize,
    /// Whether `{path}/demo` serves a demo page that signs a token for a new user on every load.
    /// Default false: anyone who can open it can chat.
    pub demo: bool,
}

impl Default for WebChatConfig {
    fn default() -> Self {
        Self {
            path: "/webchat".to_owned(),
            max_frame_bytes: 16 * 1024,
            max_outbound_bytes: 256 * 1024,
            heartbeat_interval: Duration::from_secs(20),
            heartbeat_timeout: Duration::from_secs(45),
            join_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(1),
            history_messages: 100,
            history_bytes: 64 * 1024,
            resume_window: Duration::from_secs(600),
            max_offline_users: 100_000,
            read_buffer_bytes: 64,
            deliver_typing: false,
            max_token_ttl: Duration::from_secs(24 * 3600),
            demo: false,
            listen: None,
            max_sockets: 50_000,
        }
    }
}

impl WebChatConfig {
    /// Checks the values.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] naming the first value out of range.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.path.starts_with('/') || self.path.ends_with('/') {
            return Err(Error::config(format!(
                "webchat: path {:?} must start with / and not end with one",
                self.path
            )));
        }
        let positive = [
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_outbound_bytes", self.max_outbound_bytes),
            ("history_bytes", self.history_bytes),
            ("read_buffer_bytes", self.read_buffer_bytes),
            ("max_sockets", self.max_sockets),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::config(format!("webchat: {name} must be above zero")));
        }
        let durations = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("join_timeout", self.join_timeout),
            ("sweep_interval", self.sweep_interval),
            ("max_token_ttl", self.max_token_ttl),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, v)| v.is_zero()) {
            return Err(Error::config(format!("webchat: {name} must be above zero")));
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return Err(Error::config(
                "webchat: heartbeat_timeout must be longer than heartbeat_interval",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_values_are_named() {
        WebChatConfig::default().validate().unwrap();
        let bad = WebChatConfig {
            heartbeat_timeout: Duration::from_secs(5),
            ..WebChatConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("heartbeat_timeout")
        );
        let bad = WebChatConfig {
            max_frame_bytes: 0,
            ..WebChatConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("max_frame_bytes")
        );
        let bad = WebChatConfig {
            path: "chat".into(),
            ..WebChatConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
