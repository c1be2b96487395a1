//! [`assert_refused_before_sending`]: what an adapter must refuse before it calls its platform.

use crate::Outbound;
use crate::api::{ApiError, ApiErrorKind};
use crate::outbound::{OutgoingMessage, Target};

/// Sends each of `messages` alone through `outbound` to `target` and checks that each is refused
/// as [`ApiErrorKind::InvalidRequest`] (a platform limit, a kind the platform cannot show),
/// permanent for the runtime. Check the platform's fake afterwards for the "before sending".
///
/// # Panics
///
/// When a message is sent, or refused for another reason.
pub async fn assert_refused_before_sending<O: Outbound + ?Sized>(
    outbound: &O,
    target: &Target,
    messages: impl IntoIterator<Item = OutgoingMessage>,
) {
    for message in messages {
        let shown = format!("{message:?}");
        let Err(error) = outbound.send(target, vec![message]).await else {
            panic!("sent, not refused: {shown}");
        };
        assert!(!error.is_retryable(), "{error}");
        let kind = std::error::Error::source(&error)
            .and_then(|e| e.downcast_ref::<ApiError>())
            .map(ApiError::kind);
        assert_eq!(kind, Some(ApiErrorKind::InvalidRequest), "{error}");
    }
}

/// Checks that a [`TestBot`](super::TestBot) playing `platform` by `rules` (the adapter's
/// `client::validate`) refuses what the platform's real client refuses, with the same words:
/// a handler's reply of `over` to `conversation` is dead-lettered at its first attempt with
/// exactly `client_error` (what `outbound`, the real client on the platform's fake, answered
/// for the same message), and a reply of `at_limit` is sent. Returns the client's error, for
/// the caller's checks of its words.
///
/// # Panics
///
/// When the client sends `over`, or the bot's outcome differs from the client's.
pub async fn assert_rules_refuse_as_the_client<O, R>(
    platform: crate::Platform,
    rules: R,
    outbound: &O,
    conversation: &str,
    over: OutgoingMessage,
    at_limit: OutgoingMessage,
) -> crate::Error
where
    O: Outbound + ?Sized,
    R: Fn(&[OutgoingMessage]) -> Result<(), crate::Error> + Send + Sync + 'static,
{
    let shown = format!("{over:?}");
    let Err(client_error) = outbound
        .send(&Target::conversation(conversation), vec![over.clone()])
        .await
    else {
        panic!("the client sent what its platform refuses: {shown}");
    };
    let replies = std::sync::Arc::new([over, at_limit]);
    let bot = super::TestBot::builder()
        .platform_rules(platform.clone(), rules)
        .handler(move |cx: crate::Context, event: crate::Event| {
            let replies = replies.clone();
            async move {
                let which = usize::from(event.text_content() == Some("at limit"));
                cx.reply(replies[which].clone()).await
            }
        })
        .build()
        .expect("a test bot builds");
    bot.send(super::text_on(platform.clone(), conversation, "over"))
        .await
        .expect("the event is queued");
    bot.idle().await;
    let dead = bot.dead_letters();
    assert_eq!(dead.len(), 1, "the reply over the limit is refused");
    assert_eq!(
        dead[0].error,
        crate::ErrorChain(&client_error).to_string(),
        "the test bot's refusal is the client's"
    );
    assert_eq!(dead[0].attempts, 1, "a platform's refusal is not retried");
    assert!(bot.sent().is_empty(), "nothing over the limit is sent");
    bot.send(super::text_on(platform, conversation, "at limit"))
        .await
        .expect("the event is queued");
    bot.idle().await;
    assert_eq!(bot.sent().len(), 1, "the reply at the limit is sent");
    bot.shutdown().await;
    client_error
}

/// Runs the program `exe` (a bot's binary: `env!("CARGO_BIN_EXE_<name>")` in its tests) with
/// only `vars` and `PATH` set and no standard input, and checks that a configuration mistake
/// stops it as a person can read: it fails at once, writes nothing on stdout (no demo or
/// console started instead), and its stderr is not a `Debug` dump. Returns its stderr, for the
/// caller's check of the words.
///
/// # Panics
///
/// When the program cannot be run, succeeds, writes on stdout, or prints a `Debug` dump.
pub fn assert_refused_to_start(exe: impl AsRef<std::path::Path>, vars: &[(&str, &str)]) -> String {
    let exe = exe.as_ref();
    let output = std::process::Command::new(exe)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", exe.display()));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{} started with {vars:?}: {stderr}",
        exe.display()
    );
    assert!(
        output.stdout.is_empty(),
        "nothing may start instead: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        !stderr.contains("kind:") && !stderr.contains("Error {"),
        "a Debug dump instead of a message: {stderr}"
    );
    stderr
}
