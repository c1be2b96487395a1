//! Events of every kind as each platform's adapter delivers them, for [`super::TestBot`].
//!
//! Each helper makes a core [`Event`] on the given platform, in `conversation`, sent by the user
//! whose id is the conversation's (as in a one-to-one chat; `.with_sender(..)` for a group),
//! with a unique id, and a reply token where the platform gives one (LINE for what a user does,
//! Discord for interactions). Taps take the very [`QuickReply`] or [`Button`] a handler sent, so
//! a test presses what the user would see: a choice that says text arrives as a text message on
//! every platform, one with data as a postback (with Messenger's `params` for quick replies).

use serde_json::{Value, json};

use crate::event::{
    Command, ConversationId, Deleted, Event, EventKind, Members, Message, MessageId, Platform,
    Postback, ReplyToken, UserId,
};
use crate::outbound::{Action, Button, QuickReply};

fn on(platform: Platform, conversation: impl Into<ConversationId>, kind: EventKind) -> Event {
    let conversation = conversation.into();
    let event = Event::new(platform, conversation.clone(), kind).with_sender(conversation.as_str());
    // LINE gives a reply token to what a user does, not to an unsend, a leave or an unfollow;
    // Discord to interactions (commands and components), not to gateway messages.
    let replyable = match &event.kind {
        EventKind::Deleted(_) | EventKind::Unfollowed | EventKind::MemberLeft(_) => false,
        EventKind::Command(_) | EventKind::Postback(_) => true,
        _ => event.platform == Platform::LINE,
    };
    if replyable && [Platform::LINE, Platform::DISCORD].contains(&event.platform) {
        with_reply_token(event)
    } else {
        event
    }
}

fn with_reply_token(event: Event) -> Event {
    let token = ReplyToken::new(format!("reply-token-{}", event.id));
    event.with_reply_token(token)
}

/// A text message.
pub fn text_on(
    platform: Platform,
    conversation: impl Into<ConversationId>,
    text: impl Into<String>,
) -> Event {
    on(
        platform,
        conversation,
        EventKind::Message(Message::text(text)),
    )
}

/// A postback carrying `data`, without parameters (a LINE postback action, a Messenger
/// postback button, a Discord button with a `custom_id`, a web chat postback).
pub fn postback_on(
    platform: Platform,
    conversation: impl Into<ConversationId>,
    data: impl Into<String>,
) -> Event {
    let kind = EventKind::Postback(Postback {
        data: data.into(),
        params: Value::Null,
    });
    on(platform, conversation, kind)
}

/// What a tap on `quick_reply` delivers on `platform`: its text as a message, or its data as a
/// postback; `None` for a link (nothing comes back).
pub fn quick_reply_tap_on(
    platform: Platform,
    conversation: impl Into<ConversationId>,
    quick_reply: &QuickReply,
) -> Option<Event> {
    let mut event = press(platform, conversation, &quick_reply.action)?;
    if event.platform == Platform::MESSENGER
        && let EventKind::Postback(postback) = &mut event.kind
    {
        postback.params = json!({"source": "quick_reply", "text": quick_reply.label});
    }
    Some(event)
}

/// What pressing `button` delivers on `platform`: its text as a message, or its data as a
/// postback; `None` for a link.
pub fn button_press_on(
    platform: Platform,
    conversation: impl Into<ConversationId>,
    button: &Button,
) -> Option<Event> {
    let mut event = press(platform, conversation, &button.action)?;
    if event.platform == Platform::MESSENGER
        && let EventKind::Postback(postback) = &mut event.kind
    {
        postback.params = json!({"source": "postback", "title": button.label});
    }
    Some(event)
}

fn press(
    platform: Platform,
    conversation: impl Into<ConversationId>,
    action: &Action,
) -> Option<Event> {
    match action {
        // On Discord a quick reply is a button: its press is an interaction, with a token.
        Action::Message(text) if platform == Platform::DISCORD => Some(with_reply_token(text_on(
            platform,
            conversation,
            text.clone(),
        ))),
        Action::Message(text) => Some(text_on(platform, conversation, text.clone())),
        Action::Postback(data) => Some(postback_on(platform, conversation, data.clone())),
        _ => None,
    }
}

/// A component interaction: a Discord select menu's choice (`custom_id` and the selected
/// `values`), or any platform's postback with such parameters.
pub fn component_on(
    platform: Platform,
    conversation: impl Into<ConversationId>,
    custom_id: impl Into<String>,
    values: &[&str],
) -> Event {
    let kind = EventKind::Postback(Postback {
        data: custom_id.into(),
        params: json!(values),
    });
    on(platform, conversation, kind)
}

/// A slash command (a Discord application command) named `name` with `options` by name.
pub fn command_on(
    platform: Platform,
    conversation: impl Into<ConversationId>,
    name: impl Into<String>,
    options: serde_json::Map<String, Value>,
) -> Event {
    let kind = EventKind::Command(Command {
        name: name.into(),
        options,
    });
    on(platform, conversation, kind)
}

/// The user followed the bot (LINE `follow`; the other platforms deliver no such event).
pub fn followed_on(platform: Platform, conversation: impl Into<ConversationId>) -> Event {
    on(platform, conversation, EventKind::Followed)
}

/// `users` joined the conversation (a LINE group, a Discord guild). As the adapters deliver it:
/// on LINE the group is the source and there is no sender; on Discord the member who joined is
/// the sender.
pub fn joined_on(
    platform: Platform,
    conversation: impl Into<ConversationId>,
    users: &[&str],
) -> Event {
    let kind = EventKind::MemberJoined(Members {
        users: users.iter().map(UserId::new).collect(),
    });
    let mut event = on(platform, conversation, kind);
    event.sender = match users.first() {
        Some(user) if event.platform == Platform::DISCORD => Some(UserId::new(user)),
        _ => None,
    };
    event
}

/// The message `message_id` was edited to say `text`.
pub fn edited_on(
    platform: Platform,
    conversation: impl Into<ConversationId>,
    message_id: &str,
    text: impl Into<String>,
) -> Event {
    let mut message = Message::text(text);
    message.id = Some(MessageId::new(message_id));
    on(platform, conversation, EventKind::Edited(message))
}

/// The message `message_id` was deleted (unsent). Discord does not say by whom: no sender there.
pub fn deleted_on(
    platform: Platform,
    conversation: impl Into<ConversationId>,
    message_id: &str,
) -> Event {
    let kind = EventKind::Deleted(Deleted {
        message_id: MessageId::new(message_id),
    });
    let mut event = on(platform, conversation, kind);
    if event.platform == Platform::DISCORD {
        event.sender = None;
    }
    event
}

/// Checks that a helper's event (`made`) is what a handler would see of the adapter's parse of
/// the platform's own JSON (`parsed`): the same platform, kind, conversation and sender, and a
/// reply token on both or on neither. Ids, times and raw payloads differ by nature and are not
/// compared, nor is the `mid` Meta adds to a Messenger postback's parameters.
///
/// # Panics
///
/// When they differ.
pub fn assert_delivered_alike(made: &Event, parsed: &Event) {
    let without_mid = |event: &Event| {
        let mut kind = event.kind.clone();
        if let EventKind::Postback(postback) = &mut kind
            && let Some(params) = postback.params.as_object_mut()
        {
            params.remove("mid");
        }
        kind
    };
    assert_eq!(made.platform, parsed.platform);
    assert_eq!(without_mid(made), without_mid(parsed));
    assert_eq!(made.conversation, parsed.conversation);
    assert_eq!(made.sender, parsed.sender);
    assert_eq!(
        made.reply_token.is_some(),
        parsed.reply_token.is_some(),
        "a reply token on {:?}",
        parsed.kind
    );
}
