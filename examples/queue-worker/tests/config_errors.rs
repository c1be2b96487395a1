//! A setting the worker cannot use stops it at start-up, before it connects anywhere, with one
//! plain line naming the variable: never a silent default.

use std::process::{Command, Stdio};

/// Runs queue-worker with `name=value` (and `PATH`) only; it must fail at once. Its stderr.
fn refused(name: &str, value: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_queue-worker"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(name, value)
        .stdin(Stdio::null())
        .output()
        .expect("queue-worker runs");
    assert!(
        !output.status.success(),
        "queue-worker started with {name}={value}"
    );
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

#[test]
fn every_setting_that_does_not_parse_is_named_with_what_it_should_be() {
    let cases = [
        ("WORK_MS", "2s", "a whole number of milliseconds"),
        ("LONG_MS", "-1", "a whole number of milliseconds"),
        ("LEASE_MS", "30s", "a whole number of milliseconds"),
        ("MAX_IN_FLIGHT", "0", "a whole number above zero"),
        ("POOL_SIZE", "many", "a whole number above zero"),
        ("WORKER_PROCESSES", "2.5", "a whole number above zero"),
        ("PREFETCH", "lots", "a whole number"),
        ("PARTITIONS", "x", "a whole number"),
        ("QUEUE_CAPACITY", "1e6", "a whole number"),
        ("BOT_ADDR", "8080", "an address such as 127.0.0.1:8080"),
        ("ORDERING", "random", "one of per-conversation, unordered"),
        ("QUEUE", "kafka", "one of postgres, jetstream"),
        ("HANDLER", "slow", "one of work, noop"),
    ];
    for (name, value, expected) in cases {
        assert_eq!(
            refused(name, value),
            format!("Error: {name} must be {expected}, not {value:?}"),
        );
    }
}
