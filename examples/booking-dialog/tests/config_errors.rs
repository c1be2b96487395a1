//! A configuration mistake stops booking-dialog before it serves anything, with one plain line
//! on stderr naming the variable and what is wrong: no Debug dump, no fall back to the console.

use std::process::{Command, Stdio};

/// Runs booking-dialog with only `vars` (and `PATH`) set; it must fail at once. Its stderr.
fn refused(vars: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_booking-dialog"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("booking-dialog runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "booking-dialog started: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "the console must not start: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        !stderr.contains("kind:") && !stderr.contains("Error {"),
        "a Debug dump instead of a message: {stderr}"
    );
    stderr
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
