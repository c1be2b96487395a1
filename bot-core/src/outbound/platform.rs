//! [`PlatformMessage`]: one platform's own message JSON, for [`crate::Context::reply_with`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{OutgoingMessage, Rendered};
use crate::event::Platform;

/// A message in one platform's own format, for what no neutral kind expresses (a LINE Flex
/// layout, a Discord select menu or modal, a Messenger media template).
///
/// Adapters send the JSON as-is on its platform, after checking only what the platform would
/// refuse anyway; on another platform they send the fallback, or refuse the message with an
/// invalid-request error when there is none. The adapters' typed builders (`bot_line::model::flex`,
/// `bot_messenger::model::template`, `bot_discord::model::components`) make these.
///
/// # Examples
///
/// ```
/// use bot_core::Platform;
/// use bot_core::outbound::PlatformMessage;
/// use serde_json::json;
///
/// let sticker = PlatformMessage::new(
///     Platform::LINE,
///     json!({"type": "sticker", "packageId": "446", "stickerId": "1988"}),
/// )
/// .with_fallback("👍");
/// assert_eq!(sticker.platform(), &Platform::LINE);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformMessage {
    platform: Platform,
    body: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fallback: Option<Box<OutgoingMessage>>,
}

/// What a [`PlatformMessage`] becomes on a given platform.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Rendering<'a> {
    /// The platform's own JSON, sent as-is.
    Native(&'a Value),
    /// The fallback, rendered like any neutral message.
    Fallback(&'a OutgoingMessage),
}

impl PlatformMessage {
    /// `body`, in `platform`'s own message format.
    pub fn new(platform: Platform, body: Value) -> Self {
        Self {
            platform,
            body,
            fallback: None,
        }
    }

    /// Sets what other platforms send instead.
    #[must_use]
    pub fn with_fallback(mut self, fallback: impl Into<OutgoingMessage>) -> Self {
        self.fallback = Some(Box::new(fallback.into()));
        self
    }

    /// The platform whose format the body is in.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The platform's message JSON.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// What other platforms send instead, if anything.
    pub fn fallback(&self) -> Option<&OutgoingMessage> {
        self.fallback.as_deref()
    }

    /// What this message becomes on `platform`: the body on its own platform, the fallback
    /// elsewhere, `None` (to be refused) when there is no fallback.
    pub fn render_on(&self, platform: &Platform) -> Option<Rendering<'_>> {
        if *platform == self.platform {
            Some(Rendering::Native(&self.body))
        } else {
            self.fallback().map(Rendering::Fallback)
        }
    }

    /// What this message becomes on `platform`, for an adapter's renderer: its body through
    /// `native` on its own platform, its fallback through `render` elsewhere.
    ///
    /// # Errors
    ///
    /// What `native` or `render` refuse, or `refuse` of a message saying why when there is no
    /// fallback.
    pub fn render_for<M, E>(
        &self,
        platform: &Platform,
        native: impl FnOnce(&Value) -> Result<M, E>,
        render: impl Fn(&OutgoingMessage) -> Result<Vec<Rendered<M>>, E>,
        refuse: impl FnOnce(String) -> E,
    ) -> Result<Vec<Rendered<M>>, E> {
        match self.render_on(platform) {
            Some(Rendering::Native(body)) => Ok(vec![Rendered::Message(native(body)?)]),
            Some(Rendering::Fallback(fallback)) => render(fallback),
            None => Err(refuse(format!(
                "{platform}: a {} message without a fallback cannot go to {platform}",
                self.platform
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn native_on_its_platform_fallback_or_nothing_elsewhere() {
        let bare = PlatformMessage::new(Platform::DISCORD, json!({"content": "x"}));
        assert_eq!(
            bare.render_on(&Platform::DISCORD),
            Some(Rendering::Native(&json!({"content": "x"})))
        );
        assert_eq!(bare.render_on(&Platform::LINE), None);
        let with = bare.with_fallback("plain");
        assert_eq!(
            with.render_on(&Platform::LINE),
            Some(Rendering::Fallback(&OutgoingMessage::text("plain")))
        );
    }
}
