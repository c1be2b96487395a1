//! [`Channels`]: one platform's clients by channel, so that a reply goes out through the channel
//! (LINE channel, Messenger page, Discord application) its event came through.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use super::{Outbound, OutgoingMessage, Target};
use crate::error::{Error, ErrorKind};
use crate::event::{ChannelId, ConversationId, Platform};

/// One platform's clients, by channel: sends go through the client of the target's channel
/// ([`Target::channel`]), or the default channel's when the target names none. An adapter that
/// serves several channels hands the bot one of these as its [`Outbound`] and registers it for
/// handlers (`cx.client::<Channels<LineClient>>()`).
pub struct Channels<C> {
    default: ChannelId,
    clients: HashMap<ChannelId, C>,
    /// One client whose channel the adapter was not told: every channel goes to it.
    any: bool,
}

impl<C> Channels<C> {
    /// The clients of one platform, `client` serving the default channel `id`.
    pub fn new(id: impl Into<ChannelId>, client: C) -> Self {
        let id = id.into();
        let mut clients = HashMap::new();
        clients.insert(id.clone(), client);
        Self {
            default: id,
            clients,
            any: false,
        }
    }

    /// One client for whichever channel an event names: for an adapter configured with one
    /// channel and not told its id (events still carry the id the platform gave). Adding a
    /// channel with [`Channels::insert`] ends that.
    pub fn single(client: C) -> Self {
        Self {
            any: true,
            ..Self::new("default", client)
        }
    }

    /// The clients of an adapter's channels: `first` (named `first_id` when the adapter was told
    /// its id, otherwise serving any channel, see [`Channels::single`]) and `more`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when there are more channels but the first has no id, or two have
    /// the same id; the message names the platform.
    pub fn from_parts(
        platform: &Platform,
        first_id: Option<ChannelId>,
        first: C,
        more: impl IntoIterator<Item = (ChannelId, C)>,
    ) -> Result<Self, Error> {
        let mut more = more.into_iter().peekable();
        let mut channels = match first_id {
            Some(id) => Self::new(id, first),
            None if more.peek().is_none() => return Ok(Self::single(first)),
            None => {
                return Err(Error::config(format!(
                    "{platform}: with several channels, give the first one its id too"
                )));
            }
        };
        for (id, client) in more {
            channels
                .insert(id, client)
                .map_err(|e| Error::config(format!("{platform}: {e}")))?;
        }
        Ok(channels)
    }

    /// The clients of an adapter's channels built from their builders: `first` (named
    /// `first_id`, see [`Channels::from_parts`]) and `more`, by id. A builder of `more` still
    /// sending to `platform_base` (the platform's own API) sends where `first` does, so that one
    /// setting points every channel at a proxy or a fake; the other settings (retries, time-outs,
    /// rate limits) are each builder's own. Each client's metrics carry its channel's id as
    /// `bot.channel`.
    ///
    /// # Errors
    ///
    /// [`crate::api::ApiErrorKind::Config`] when a client's configuration is invalid, there are
    /// more channels but the first has no id, or two have the same id.
    pub fn from_builders<'a, B>(
        platform: &Platform,
        platform_base: &str,
        first_id: Option<&str>,
        mut first: B,
        more: impl IntoIterator<Item = (&'a str, B)>,
    ) -> Result<Self, crate::api::ApiError>
    where
        B: crate::api::BuildClient<Client = C>,
    {
        let base = first.api_config().base().to_owned();
        let mut clients = Vec::new();
        for (id, mut builder) in more {
            if builder.api_config().base() == platform_base {
                builder = builder.api_base(base.clone());
            }
            // Each channel's client metrics carry its id as `bot.channel`.
            let builder = builder.channel_label(id);
            clients.push((ChannelId::new(id), builder.build_client()?));
        }
        if let Some(id) = first_id {
            first = first.channel_label(id);
        }
        Self::from_parts(
            platform,
            first_id.map(ChannelId::new),
            first.build_client()?,
            clients,
        )
        .map_err(|e| crate::api::ApiError::config(e.to_string()))
    }

    /// Replaces every client with `f` of it (an adapter gives them the bot's telemetry).
    pub fn update(&mut self, mut f: impl FnMut(&C) -> C) {
        for client in self.clients.values_mut() {
            *client = f(client);
        }
    }

    /// Every channel's client records its calls in `telemetry` from now on: what an adapter's
    /// [`crate::Adapter::attach`] does with the bot's telemetry.
    pub fn record_in(&mut self, telemetry: &crate::Telemetry)
    where
        C: Instrumented,
    {
        self.update(|client| client.with_telemetry(telemetry.clone()));
    }

    /// Registers these channels for handlers (`cx.client::<Channels<C>>()`, then
    /// [`Channels::get`] with the event's channel), and the client itself (`cx.client::<C>()`)
    /// when there is one channel only: with several, a bare client would be the first channel's
    /// whatever the event, and a push through it would speak as the wrong bot.
    pub fn register(&self, clients: &mut crate::adapter::Clients)
    where
        C: Clone + Send + Sync + 'static,
    {
        if self.clients.len() == 1 {
            clients.insert(std::sync::Arc::new(self.default_client().clone()));
        }
        clients.insert(std::sync::Arc::new(self.clone()));
    }

    /// Adds the client of channel `id`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the channel has a client already.
    pub fn insert(&mut self, id: impl Into<ChannelId>, client: C) -> Result<(), Error> {
        let id = id.into();
        if self.clients.contains_key(&id) {
            return Err(Error::config(format!("channel {id} is configured twice")));
        }
        self.clients.insert(id, client);
        self.any = false;
        Ok(())
    }

    /// The client of `channel`, or of the default channel for `None`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoOutbound`] for a channel this adapter does not serve: sending through
    /// another channel's token would fail or, worse, speak as the wrong bot.
    pub fn get(&self, channel: Option<&ChannelId>) -> Result<&C, Error> {
        let id = match channel {
            Some(id) if !self.any => id,
            _ => &self.default,
        };
        self.clients.get(id).ok_or_else(|| {
            Error::new(
                ErrorKind::NoOutbound,
                format!("no client for channel {id}; the adapter serves other channels"),
            )
            .permanent()
        })
    }

    /// The default channel's id.
    pub fn default_id(&self) -> &ChannelId {
        &self.default
    }

    /// The default channel's client.
    pub fn default_client(&self) -> &C {
        // Inserted by `new` and never removed.
        &self.clients[&self.default]
    }

    /// Every channel and its client.
    pub fn iter(&self) -> impl Iterator<Item = (&ChannelId, &C)> {
        self.clients.iter()
    }

    /// How many channels.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Always false: there is a default channel.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A platform client that can record its calls in a bot's telemetry, which exists only once the
/// bot is built ([`Channels::record_in`]).
pub trait Instrumented: Sized {
    /// This client, recording its calls in `telemetry`.
    fn with_telemetry(&self, telemetry: crate::Telemetry) -> Self;
}

/// One further channel's variables from the environment, as [`numbered_vars`] reads them: each
/// part's value, in the order the parts were named.
pub type NumberedVars<const N: usize> = [Option<String>; N];

/// The variables of an adapter's further channels, numbered from 2 without gaps:
/// `<prefix><n>_<part>` for each of `parts` (a part's name, and whether it is required), read
/// with `var` (which should treat an empty value as unset). The numbering ends at the first `n`
/// with none of them set.
///
/// # Errors
///
/// [`crate::api::ApiErrorKind::Config`] naming the required variables of a channel for which
/// some are set and a required one is not.
///
/// # Examples
///
/// ```
/// use bot_core::Platform;
/// use bot_core::outbound::numbered_vars;
///
/// let env = |name: &str| (name == "DISCORD_APPLICATION_2_ID").then(|| "2".to_owned());
/// let parts = [("ID", true), ("TOKEN", true), ("PUBLIC_KEY", false)];
/// let error = numbered_vars(&Platform::DISCORD, "DISCORD_APPLICATION_", parts, env).unwrap_err();
/// assert!(error.to_string().contains("DISCORD_APPLICATION_2_TOKEN"));
/// ```
pub fn numbered_vars<const N: usize>(
    platform: &Platform,
    prefix: &str,
    parts: [(&str, bool); N],
    var: impl Fn(&str) -> Option<String>,
) -> Result<Vec<NumberedVars<N>>, crate::api::ApiError> {
    let mut channels = Vec::new();
    loop {
        let n = channels.len() + 2;
        let name = |part: &str| format!("{prefix}{n}_{part}");
        let values = parts.map(|(part, _)| var(&name(part)));
        if values.iter().all(Option::is_none) {
            return Ok(channels);
        }
        let missing = parts
            .iter()
            .zip(&values)
            .any(|((_, required), value)| *required && value.is_none());
        if missing {
            let required: Vec<String> = (parts.iter())
                .filter(|(_, required)| *required)
                .map(|(part, _)| name(part))
                .collect();
            return Err(crate::api::ApiError::config(format!(
                "{platform}: set all of {}",
                required.join(", ")
            )));
        }
        channels.push(values);
    }
}

impl<C: Clone> Clone for Channels<C> {
    fn clone(&self) -> Self {
        Self {
            default: self.default.clone(),
            clients: self.clients.clone(),
            any: self.any,
        }
    }
}

impl<C> fmt::Debug for Channels<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.clients.keys().map(ChannelId::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("Channels")
            .field("default", &self.default)
            .field("channels", &ids)
            .finish()
    }
}

#[async_trait]
impl<C: Outbound> Outbound for Channels<C> {
    fn platform(&self) -> Platform {
        self.default_client().platform()
    }

    // Not an `async fn`: the channel's client's boxed future is handed on as it is, instead of
    // boxed again inside one of ours (a box per send, and the client's future behind two).
    fn send<'a, 'b, 'f>(
        &'a self,
        target: &'b Target,
        messages: Vec<OutgoingMessage>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        match self.get(target.channel.as_ref()) {
            Ok(client) => client.send(target, messages),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn send_owned<'a, 'f>(
        &'a self,
        target: Target,
        messages: Vec<OutgoingMessage>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        match self.get(target.channel.as_ref()) {
            Ok(client) => client.send_owned(target, messages),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    async fn typing(&self, conversation: &ConversationId) -> Result<(), Error> {
        self.default_client().typing(conversation).await
    }

    async fn typing_in(&self, target: &Target) -> Result<(), Error> {
        self.get(target.channel.as_ref())?.typing_in(target).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RecordingOutbound;

    #[tokio::test]
    async fn sends_go_through_the_targets_channel_and_an_unknown_one_is_refused() {
        let a = RecordingOutbound::new(Platform::TEST);
        let b = RecordingOutbound::new(Platform::TEST);
        let mut channels = Channels::new("a", std::sync::Arc::new(a));
        channels.insert("b", std::sync::Arc::new(b)).unwrap();
        assert!(
            channels
                .insert("b", channels.default_client().clone())
                .is_err()
        );
        let to = |channel: Option<&str>| {
            let mut target = Target::conversation("U1");
            target.channel = channel.map(ChannelId::new);
            target
        };
        channels
            .send(&to(Some("b")), vec!["to b".into()])
            .await
            .unwrap();
        channels.send(&to(None), vec!["to a".into()]).await.unwrap();
        let unknown = channels
            .send(&to(Some("c")), vec!["lost".into()])
            .await
            .unwrap_err();
        assert_eq!(unknown.kind(), ErrorKind::NoOutbound);
        assert!(!unknown.is_retryable());
        let texts = |id: &str| channels.get(Some(&ChannelId::new(id))).unwrap().texts();
        assert_eq!(texts("a"), ["to a"]);
        assert_eq!(texts("b"), ["to b"]);
        assert_eq!(channels.len(), 2);

        let mut registered = crate::adapter::Clients::default();
        channels.register(&mut registered);
        assert!(
            registered
                .0
                .get_arc::<std::sync::Arc<RecordingOutbound>>()
                .is_none(),
            "with several channels no bare client: it would be the first's whatever the event"
        );
        assert!(
            registered
                .0
                .get_arc::<Channels<std::sync::Arc<RecordingOutbound>>>()
                .is_some()
        );

        let single = Channels::single(std::sync::Arc::new(RecordingOutbound::new(Platform::TEST)));
        single
            .send(&to(Some("whatever")), vec!["x".into()])
            .await
            .unwrap();
        assert_eq!(single.default_client().texts(), ["x"]);
    }

    #[test]
    fn numbered_variables_are_read_from_2_without_gaps_and_a_half_set_channel_is_refused() {
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let parts = [("ID", true), ("KEY", false)];
        let read = numbered_vars(
            &Platform::TEST,
            "X_",
            parts,
            env(&[
                ("X_2_ID", "a"),
                ("X_3_ID", "b"),
                ("X_3_KEY", "k"),
                ("X_5_ID", "gap"),
            ]),
        )
        .unwrap();
        assert_eq!(
            read,
            [
                [Some("a".to_owned()), None],
                [Some("b".to_owned()), Some("k".to_owned())]
            ]
        );
        let half = numbered_vars(&Platform::TEST, "X_", parts, env(&[("X_2_KEY", "k")]));
        let error = half.unwrap_err();
        assert_eq!(error.kind(), crate::api::ApiErrorKind::Config);
        assert!(error.to_string().contains("X_2_ID"), "{error}");
        assert!(
            numbered_vars(&Platform::TEST, "X_", parts, env(&[]))
                .unwrap()
                .is_empty()
        );
    }
}
