//! Interaction answers: the response (in the HTTP answer, or by callback), then follow-ups,
//! each part sent at most once.

use std::future::Future;
use std::time::Duration;

use bot_core::EventId;
use bot_core::outbound::OutgoingMessage;
use serde_json::{Value, json};

use super::DiscordClient;
use crate::error::Error;
use crate::interactions::{CHANNEL_MESSAGE, Route};
use bot_core::api::send_once;

/// Discord's "interaction has already been acknowledged" error code.
const ALREADY_ACKNOWLEDGED: i64 = 40060;
/// Discord's "unknown webhook" error code.
const UNKNOWN_WEBHOOK: i64 = 10015;
/// Follow-ups tried again after an unknown webhook, and the wait before each.
const FOLLOW_UP_TRIES: u32 = 3;
const FOLLOW_UP_WAIT: Duration = Duration::from_millis(500);

impl DiscordClient {
    /// Makes call `part` of a send at most once ([`send_once`]).
    async fn once(
        &self,
        send: Option<(&EventId, u32)>,
        part: usize,
        call: impl Future<Output = Result<(), Error>>,
    ) -> Result<(), bot_core::Error> {
        let key = send.map(|(event, send_index)| (event.clone(), send_index, part));
        send_once(&self.sent, key, part, self.http.deadline_from_now(), call).await
    }

    /// A follow-up, tried again when Discord does not know the interaction's webhook yet: the
    /// HTTP answer that acknowledged it may still be on its way to Discord.
    async fn follow_up(
        &self,
        application_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<(), Error> {
        let mut tries = 0;
        loop {
            match self.http.create_followup(application_id, token, body).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some(UNKNOWN_WEBHOOK) && tries < FOLLOW_UP_TRIES => {
                    tries += 1;
                    tokio::time::sleep(FOLLOW_UP_WAIT).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn answer_interaction(
        &self,
        interaction_id: &str,
        token: &str,
        messages: &[OutgoingMessage],
        send: Option<(&EventId, u32)>,
    ) -> Result<(), bot_core::Error> {
        // The first answer goes through the callback, which needs no application id; only
        // follow-ups do, so a gateway bot without one can still answer a pressed button.
        let application_id = || {
            self.application_id.as_deref().ok_or_else(|| {
                Error::config(
                    "discord: a follow-up (a second message, or an answer after a deferral) \
                     needs the application id (DISCORD_APPLICATION_ID)",
                )
            })
        };
        let mut bodies = crate::render::bodies(messages)?.into_iter();
        let Some(first) = bodies.next() else {
            return Ok(());
        };
        // A modal is a response of its own; anything after it goes out as follow-ups.
        let callback = crate::render::is_callback(&first);
        let response = if callback {
            first.clone()
        } else {
            json!({"type": CHANNEL_MESSAGE, "data": first})
        };
        if callback && bodies.as_slice().iter().any(crate::render::is_callback) {
            return Err(Error::invalid_request(
                "discord: an interaction takes one modal, as its first response",
            )
            .into());
        }
        let respond = async {
            match self.pending.route(interaction_id, response.clone()) {
                Route::Answered => Ok(()),
                Route::FollowUp if callback => Err(Error::invalid_request(
                    "discord: a modal must be the first response; this interaction was deferred",
                )),
                Route::FollowUp => self.follow_up(application_id()?, token, &first).await,
                Route::Callback => match self
                    .http
                    .interaction_callback(interaction_id, token, &response)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) if e.code() == Some(ALREADY_ACKNOWLEDGED) => {
                        self.follow_up(application_id()?, token, &first).await
                    }
                    Err(e) => Err(e),
                },
            }
        };
        self.once(send, 0, respond).await?;
        for (part, body) in bodies.enumerate() {
            let application_id = application_id()?;
            self.once(send, part + 1, self.follow_up(application_id, token, &body))
                .await?;
        }
        Ok(())
    }
}
