//! What a close code asks of the shard.

use crate::error::{Error, ErrorKind};

/// What to do after the gateway closed the connection with a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseAction {
    /// Reconnect and resume the session.
    Resume,
    /// Reconnect with a new session (identify again).
    Reidentify,
    /// Stop the shard: reconnecting would be refused again.
    Fatal(ErrorKind),
}

/// Classifies a close code (Discord's table, PROTOCOLS.md 3.4).
pub(crate) fn classify(code: u16) -> CloseAction {
    match code {
        4004 => CloseAction::Fatal(ErrorKind::Authentication),
        4010 => CloseAction::Fatal(ErrorKind::InvalidShard),
        4011 => CloseAction::Fatal(ErrorKind::ShardingRequired),
        4012 => CloseAction::Fatal(ErrorKind::InvalidApiVersion),
        4013 => CloseAction::Fatal(ErrorKind::InvalidIntents),
        4014 => CloseAction::Fatal(ErrorKind::DisallowedIntents),
        // Unknown opcode, not authenticated, already authenticated, invalid seq, session timed
        // out: the session is gone.
        4001 | 4003 | 4005 | 4007 | 4009 => CloseAction::Reidentify,
        // Unknown error, decode error, rate limited, and anything else (network closes): resume.
        _ => CloseAction::Resume,
    }
}

/// The error a fatal close code ends the shard with.
pub(crate) fn fatal_error(kind: ErrorKind, code: u16, reason: &str) -> Error {
    let what = match kind {
        ErrorKind::Authentication => "the token was refused",
        ErrorKind::InvalidShard => "the shard is invalid",
        ErrorKind::ShardingRequired => "the bot needs more shards",
        ErrorKind::InvalidApiVersion => "the gateway version is invalid",
        ErrorKind::InvalidIntents => "the intents are invalid",
        ErrorKind::DisallowedIntents => "privileged intents are not enabled for this bot",
        _ => "the gateway refused the shard",
    };
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    Error::new(kind, format!("discord gateway: {what}{reason}")).with_close_code(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_split_into_resume_reidentify_and_fatal() {
        for code in [4000, 4002, 4008, 1006, 1011] {
            assert_eq!(classify(code), CloseAction::Resume, "{code}");
        }
        for code in [4001, 4003, 4005, 4007, 4009] {
            assert_eq!(classify(code), CloseAction::Reidentify, "{code}");
        }
        for code in [4004, 4010, 4011, 4012, 4013, 4014] {
            assert!(matches!(classify(code), CloseAction::Fatal(_)), "{code}");
        }
    }
}
