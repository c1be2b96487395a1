//! A configuration mistake stops booking-dialog before it serves anything, with one plain line
//! on stderr naming the variable and what is wrong: no Debug dump, no fall back to the console.

use bot_core::testing::assert_refused_to_start;

/// Runs booking-dialog with only `vars` (and `PATH`) set; it must fail at once, readably. Its stderr.
fn refused(vars: &[(&str, &str)]) -> String {
    assert_refused_to_start(env!("CARGO_BIN_EXE_booking-dialog"), vars)
}

#[test]
fn a_platform_half_configured_is_an_error_naming_the_missing_variable() {
    let stderr = refused(&[("LINE_CHANNEL_SECRET", "s")]);
    assert_eq!(
        stderr.trim(),
        "Error: line: LINE_CHANNEL_SECRET is set but LINE_CHANNEL_ACCESS_TOKEN is not"
    );
}

#[test]
fn an_address_that_does_not_parse_is_an_error_naming_the_variable() {
    let stderr = refused(&[("BOT_ADDR", "localhost")]);
    assert_eq!(
        stderr.trim(),
        "Error: BOT_ADDR must be an address such as 127.0.0.1:8080, not \"localhost\""
    );
}
