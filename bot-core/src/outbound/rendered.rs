//! [`Rendered`]: what a platform-neutral message becomes on a platform, as each adapter's
//! renderer produces it, and the send-level helpers they share.

use super::OutgoingMessage;

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
}
