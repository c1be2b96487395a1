//! [`InteractionSigner`]: HTTP interactions signed as Discord signs them.

use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};

use super::APPLICATION_ID;

/// Signs interactions as Discord does (Ed25519 over timestamp + body), with a fixed test key.
#[derive(Debug, Clone)]
pub struct InteractionSigner {
    key: SigningKey,
}

impl Default for InteractionSigner {
    fn default() -> Self {
        Self::new([7; 32])
    }
}

impl InteractionSigner {
    /// A signer with this secret key.
    pub fn new(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The public key to configure the endpoint with (`DISCORD_PUBLIC_KEY`), hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// `X-Signature-Ed25519` for `timestamp` and `body`, hex.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        hex::encode(self.key.sign(&message).to_bytes())
    }

    /// The current Unix time in seconds, as Discord puts it in `X-Signature-Timestamp`.
    pub fn now() -> String {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string()
    }

    /// Posts `interaction` to `url`, signed now.
    ///
    /// # Errors
    ///
    /// Fails when the request cannot be made.
    pub async fn post(
        &self,
        url: &str,
        interaction: &Value,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let body = interaction.to_string();
        let timestamp = Self::now();
        reqwest::Client::new()
            .post(url)
            .header(
                crate::interactions::SIGNATURE_HEADER,
                self.sign(&timestamp, body.as_bytes()),
            )
            .header(crate::interactions::TIMESTAMP_HEADER, timestamp)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
    }
}

/// An interaction of `kind` in `channel_id` by `user_id`, with a fresh id and token.
fn interaction(kind: u8, data: Value, channel_id: &str, user_id: &str) -> Value {
    static NEXT: AtomicU64 = AtomicU64::new(1_300_000_000_000_000_000);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    json!({
        "id": id.to_string(), "application_id": APPLICATION_ID, "type": kind,
        "token": format!("interaction-token-{id}"), "version": 1,
        "channel_id": channel_id, "channel": {"id": channel_id, "type": 0},
        "guild_id": "1", "member": {"user": {"id": user_id, "username": "someone"}},
        "data": data,
    })
}

/// A slash command interaction as Discord sends it (type 2), with a fresh id and token.
pub fn slash_command(name: &str, options: Value, channel_id: &str, user_id: &str) -> Value {
    let data = json!({"id": "42", "name": name, "type": 1, "options": options});
    interaction(2, data, channel_id, user_id)
}

/// A button press (a component interaction, type 3) on the button whose `custom_id` is
/// `custom_id`: what a postback button, or a quick reply, sends when pressed. One that says
/// text (`custom_id` starting with [`crate::model::components::TEXT_CUSTOM_ID_PREFIX`]) maps
/// to a text message.
pub fn button_press(custom_id: &str, channel_id: &str, user_id: &str) -> Value {
    let data = json!({"custom_id": custom_id, "component_type": 2});
    interaction(3, data, channel_id, user_id)
}

/// A select menu choice (a component interaction, type 3): the menu's `custom_id` and the
/// `values` chosen.
pub fn select_menu(custom_id: &str, values: &[&str], channel_id: &str, user_id: &str) -> Value {
    let data = json!({"custom_id": custom_id, "component_type": 3, "values": values});
    interaction(3, data, channel_id, user_id)
}

/// A message as the gateway's `MESSAGE_CREATE` carries it, with a fresh snowflake.
pub fn message_create(text: &str, channel_id: &str, user_id: &str) -> Value {
    static NEXT: AtomicU64 = AtomicU64::new(1_310_000_000_000_000_000);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    json!({"id": id.to_string(), "channel_id": channel_id, "guild_id": "1",
           "author": {"id": user_id, "username": "someone"}, "content": text})
}
