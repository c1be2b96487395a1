//! Messages posted in a channel, each part with a nonce derived from the send.

use bot_core::EventId;
use bot_core::outbound::OutgoingMessage;
use serde_json::json;

use super::DiscordClient;
use crate::error::Error;

impl DiscordClient {
    /// Posts `messages` in `channel_id`. With `send` (the event answered and the handler's send
    /// index, [`Target::send_index`](bot_core::outbound::Target::send_index)) each message carries a nonce derived from them, so posting
    /// the same send again (a retry) creates nothing new.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::create_message`](crate::DiscordHttp::create_message), or [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) for buttons over
    /// Discord's limits.
    pub async fn post(
        &self,
        channel_id: &str,
        messages: &[OutgoingMessage],
        send: Option<(&EventId, u32)>,
        reply_to: Option<&str>,
    ) -> Result<(), Error> {
        let bodies = crate::render::bodies(messages)?;
        if bodies.iter().any(crate::render::is_callback) {
            return Err(Error::invalid_request(
                "discord: a modal answers an interaction; it cannot be posted in a channel",
            ));
        }
        for (part, mut body) in bodies.into_iter().enumerate() {
            let key = send.map(|(event, send_index)| (event.clone(), send_index, part));
            if key.as_ref().is_some_and(|k| self.sent.contains(k)) {
                // An earlier run of this handler posted this part already.
                continue;
            }
            if let Some((event, send_index)) = send {
                body["nonce"] = json!(nonce(event, send_index, part));
                body["enforce_nonce"] = json!(true);
            }
            if let (Some(message), 0) = (reply_to, part) {
                body["message_reference"] =
                    json!({"message_id": message, "fail_if_not_exists": false});
            }
            self.http.create_message(channel_id, &body).await?;
            if let Some(key) = key {
                self.sent.insert(key);
            }
        }
        Ok(())
    }
}

/// A nonce for part `part` of the `send_index`-th send for `event`: 25 characters at most, as
/// Discord allows.
fn nonce(event: &EventId, send_index: u32, part: usize) -> String {
    // SHA-256, not `DefaultHasher`: the nonce must be the same in every process and every build
    // that retries this send, or Discord cannot recognise the retry.
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(event.as_str().as_bytes());
    hasher.update(send_index.to_le_bytes());
    hasher.update((part as u64).to_le_bytes());
    let mut nonce = hex::encode(hasher.finalize());
    nonce.truncate(25);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;
    /// SHA-256 of the event id, send index 0 and part 0, hex, first 25 characters.
    const NONCE_OF_FIRST_PART: &str = "049653412f6b5f1cb631f59a5";

    #[test]
    fn nonces_are_short_and_stable_per_event_and_part() {
        let e = EventId::new("1180000000000000000");
        assert_eq!(nonce(&e, 0, 0), nonce(&e, 0, 0));
        assert_ne!(nonce(&e, 0, 0), nonce(&e, 0, 1));
        assert_ne!(nonce(&e, 0, 0), nonce(&e, 1, 0));
        assert!(nonce(&e, 7, 12).len() <= 25);
        // Fixed across builds and processes: a retry elsewhere carries the same nonce.
        assert_eq!(nonce(&e, 0, 0), NONCE_OF_FIRST_PART);
    }
}
