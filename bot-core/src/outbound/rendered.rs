//! [`Rendered`]: what a platform-neutral message becomes on a platform, as each adapter's
//! renderer produces it, and the send-level helpers they share.

use super::OutgoingMessage;
use crate::api::ApiError;
use crate::event::Platform;

/// What a neutral message becomes on a platform: one of the platform's message objects, or a
/// typing indicator (LINE's loading animation, Messenger's `typing_on`, Discord's trigger typing),
/// which the platform takes as a call of its own.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered<M> {
    /// A message object of the platform.
    Message(M),
    /// Show the typing indicator.
    Typing,
}

/// The message objects of `rendered`, the typing indicator left out.
pub fn messages_of<M>(rendered: Vec<Rendered<M>>) -> Vec<M> {
    rendered
        .into_iter()
        .filter_map(|r| match r {
            Rendered::Message(m) => Some(m),
            Rendered::Typing => None,
        })
        .collect()
}

/// Moves the message objects of `rendered` to `out`; whether it held a typing indicator.
pub fn collect_into<M>(rendered: Vec<Rendered<M>>, out: &mut Vec<M>) -> bool {
    let mut typing = false;
    for r in rendered {
        match r {
            Rendered::Message(m) => out.push(m),
            Rendered::Typing => typing = true,
        }
    }
    typing
}

/// The messages of one send, each rendered by `render`: whether a typing indicator goes first
/// (before any message: a LINE reply token allows one call), and the message objects in order.
///
/// # Errors
///
/// The first message `render` refuses.
pub fn render_send<M, E>(
    messages: &[OutgoingMessage],
    render: impl Fn(&OutgoingMessage) -> Result<Vec<Rendered<M>>, E>,
) -> Result<(bool, Vec<M>), E> {
    let mut typing = false;
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        typing |= collect_into(render(message)?, &mut out);
    }
    Ok((typing, out))
}

/// Refuses more than `max` of `what` (`quick replies`, `buttons on a card`) before anything is
/// sent: `line: at most 13 quick replies, got 14`.
///
/// # Errors
///
/// [`ApiErrorKind::InvalidRequest`](crate::api::ApiErrorKind::InvalidRequest) when `count` is
/// over `max`.
pub fn at_most(platform: &Platform, what: &str, count: usize, max: usize) -> Result<(), ApiError> {
    if count > max {
        return Err(ApiError::invalid_request(format!(
            "{platform}: at most {max} {what}, got {count}"
        )));
    }
    Ok(())
}

/// Refuses a `text` of more than `max` characters before anything is sent: `what` names it
/// (`line: a text message holds at most 5000 characters, got 5001`).
///
/// # Errors
///
/// [`ApiErrorKind::InvalidRequest`](crate::api::ApiErrorKind::InvalidRequest) when `text` is
/// longer.
pub fn chars_at_most(
    platform: &Platform,
    what: &str,
    text: &str,
    max: usize,
) -> Result<(), ApiError> {
    let chars = text.chars().count();
    if chars > max {
        return Err(ApiError::invalid_request(format!(
            "{platform}: {what} holds at most {max} characters, got {chars}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_is_lifted_out_and_messages_keep_their_order() {
        let render = |m: &OutgoingMessage| -> Result<Vec<Rendered<String>>, ()> {
            match m.text.as_deref() {
                Some("bad") => Err(()),
                Some(text) => Ok(vec![Rendered::Message(text.to_owned())]),
                None => Ok(vec![Rendered::Typing]),
            }
        };
        let send = [
            OutgoingMessage::text("a"),
            OutgoingMessage::typing(),
            OutgoingMessage::text("b"),
        ];
        assert_eq!(
            render_send(&send, render),
            Ok((true, vec!["a".to_owned(), "b".to_owned()]))
        );
        assert_eq!(
            render_send(&[OutgoingMessage::text("bad")], render),
            Err(())
        );
        assert_eq!(
            messages_of(vec![Rendered::Typing, Rendered::Message(1)]),
            vec![1]
        );
    }

    #[test]
    fn limits_refuse_with_the_platform_the_limit_and_the_count() {
        assert!(at_most(&Platform::LINE, "quick replies", 13, 13).is_ok());
        let over = at_most(&Platform::LINE, "quick replies", 14, 13).unwrap_err();
        assert_eq!(over.kind(), crate::api::ApiErrorKind::InvalidRequest);
        assert_eq!(over.to_string(), "line: at most 13 quick replies, got 14");
        assert!(chars_at_most(&Platform::DISCORD, "a title", "ééé", 3).is_ok());
        let long = chars_at_most(&Platform::DISCORD, "a title", "éééé", 3).unwrap_err();
        assert_eq!(
            long.to_string(),
            "discord: a title holds at most 3 characters, got 4"
        );
    }
}
