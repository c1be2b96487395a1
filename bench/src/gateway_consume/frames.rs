//! The frames the fake gateway writes: READY and MESSAGE_CREATE dispatches of about 1 KB.

use std::fmt::Write as _;

use serde_json::json;

use super::GUILD_ID;

/// Writes MESSAGE_CREATE dispatch `number` (sequence `sequence`) into `out`, about 1 KB, shaped
/// as Discord sends it: author, member, mentions, ids, timestamps, empty embeds.
pub(crate) fn message_create(out: &mut String, sequence: u64, number: u64, channels: u64) {
    out.clear();
    let id = 1_180_000_000_000_000_000_u64 + number;
    let channel = 1_150_000_000_000_000_000_u64 + number % channels.max(1);
    let author = 1_120_000_000_000_000_000_u64 + number % 5_000;
    let mentioned = 1_120_000_000_000_000_000_u64 + (number + 1) % 5_000;
    let _ = write!(
        out,
        concat!(
            r#"{{"t":"MESSAGE_CREATE","s":{sequence},"op":0,"d":{{"type":0,"tts":false,"#,
            r#""timestamp":"2026-11-30T10:{minute:02}:{second:02}.{micros:06}+00:00","pinned":false,"#,
            r#""nonce":"{nonce}","mentions":[{{"username":"member{mentioned_n}","public_flags":0,"#,
            r#""id":"{mentioned}","global_name":"Member {mentioned_n}","discriminator":"0","#,
            r#""avatar":null}}],"mention_roles":[],"mention_everyone":false,"#,
            r#""member":{{"roles":["1100000000000000101"],"premium_since":null,"pending":false,"#,
            r#""nick":null,"mute":false,"joined_at":"2025-06-01T12:00:00.000000+00:00","flags":0,"#,
            r#""deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null}},"#,
            r#""id":"{id}","flags":0,"embeds":[],"edited_timestamp":null,"#,
            r#""content":"<@{mentioned}> message {number}: the quick brown fox jumps over the lazy dog, "#,
            r#"then the lazy dog asks the bot for the weather in three cities and a reminder for tomorrow.","#,
            r#""components":[],"channel_id":"{channel}","author":{{"username":"member{author_n}","#,
            r#""public_flags":0,"id":"{author}","global_name":"Member {author_n}","discriminator":"0","#,
            r#""clan":null,"avatar_decoration_data":null,"avatar":"a_0123456789abcdef0123456789abcdef"}},"#,
            r#""attachments":[],"guild_id":"{guild}"}}}}"#
        ),
        sequence = sequence,
        mentioned = mentioned,
        id = id,
        number = number,
        channel = channel,
        author = author,
        minute = (number / 60_000_000) % 60,
        second = (number / 1_000_000) % 60,
        micros = number % 1_000_000,
        nonce = id + 7,
        mentioned_n = mentioned % 10_000,
        author_n = author % 10_000,
        guild = GUILD_ID,
    );
}

/// The READY dispatch (sequence 1).
pub(crate) fn ready(url: &str) -> String {
    json!({"t": "READY", "s": 1, "op": 0, "d": {
        "v": 10,
        "user": {"id": bot_discord::testing::BOT_USER_ID, "username": "botload", "discriminator": "0",
                 "global_name": null, "avatar": null, "bot": true, "mfa_enabled": false,
                 "verified": true, "flags": 0},
        "guilds": [{"id": GUILD_ID.to_string(), "unavailable": true}],
        "session_id": "botload-session",
        "resume_gateway_url": url,
        "shard": [0, 1],
        "application": {"id": bot_discord::testing::APPLICATION_ID, "flags": 0},
    }})
    .to_string()
}
