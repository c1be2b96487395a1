//! A configuration mistake stops echo-bot before it serves anything, with one plain line on
//! stderr naming the variable and what is wrong: no Debug dump, no silent fall back to the demo.

use bot_core::testing::assert_refused_to_start;

/// Runs echo-bot with only `vars` (and `PATH`) set; it must fail at once, readably. Its stderr.
fn refused(vars: &[(&str, &str)]) -> String {
    assert_refused_to_start(env!("CARGO_BIN_EXE_echo-bot"), vars)
}

#[test]
fn a_platform_half_configured_is_an_error_naming_the_missing_variable() {
    let stderr = refused(&[("LINE_CHANNEL_SECRET", "s")]);
    assert_eq!(
        stderr.trim(),
        "Error: line: LINE_CHANNEL_SECRET is set but LINE_CHANNEL_ACCESS_TOKEN is not"
    );
    let stderr = refused(&[
        ("MESSENGER_APP_SECRET", "s"),
        ("MESSENGER_VERIFY_TOKEN", "v"),
    ]);
    assert_eq!(
        stderr.trim(),
        "Error: messenger: some settings are given but MESSENGER_PAGE_ACCESS_TOKEN is not set"
    );
}

#[test]
fn a_misspelt_variable_beside_correct_ones_is_an_error_naming_the_right_name() {
    let stderr = refused(&[
        ("LINE_CHANEL_SECRET", "s"),
        ("LINE_CHANNEL_ACCESS_TOKEN", "t"),
    ]);
    assert_eq!(
        stderr.trim(),
        "Error: line: LINE_CHANEL_SECRET is not a variable line reads; \
         did you mean LINE_CHANNEL_SECRET? Rename or unset it"
    );
    let stderr = refused(&[("DISCORD_TOKN", "t")]);
    assert!(
        stderr.contains(
            "discord: DISCORD_TOKN is not a variable discord reads; did you mean DISCORD_TOKEN?"
        ),
        "{stderr}"
    );
}

#[test]
fn values_that_do_not_parse_are_errors_naming_the_variable() {
    let stderr = refused(&[("BOT_PROCESSES", "two")]);
    assert_eq!(
        stderr.trim(),
        "Error: BOT_PROCESSES must be a whole number of processes above zero, not \"two\""
    );
    assert!(refused(&[("BOT_PROCESSES", "0")]).contains("BOT_PROCESSES must be"));
    let stderr = refused(&[("BOT_ADDR", "localhost")]);
    assert_eq!(
        stderr.trim(),
        "Error: BOT_ADDR must be an address such as 127.0.0.1:8080, not \"localhost\""
    );
    let stderr = refused(&[("BOT_LOG_FORMAT", "logfmt")]);
    assert_eq!(
        stderr.trim(),
        "Error: BOT_LOG_FORMAT must be text or json, not \"logfmt\""
    );
    let stderr = refused(&[("WEBCHAT_SECRET", "s"), ("WEBCHAT_ADDR", "anywhere")]);
    assert_eq!(
        stderr.trim(),
        "Error: webchat: WEBCHAT_ADDR \"anywhere\" is not an address"
    );
}
