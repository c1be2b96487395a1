//! Property tests of the LINE webhook: signature check, body parsing and mapping to core events,
//! driven in-process through the webhook router. Arbitrary and mutated bodies never panic and
//! get 200/400/401/413, valid events round-trip to the handler, tampered signatures never verify.
//!
//! The same strategies and checks run by the million in `cargo run --release -p bench --bin
//! fuzz-run` (see the book's "Reliability: property tests and fuzzing").

#[path = "../../bot-core/tests/support/fuzzing.rs"]
mod fuzzing;
mod props_cases;

use proptest::prelude::*;
use proptest::test_runner::Config;

use props_cases as line;

fn config() -> Config {
    Config {
        // Failures print their input; no regression files are written into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

#[test]
fn valid_events_round_trip_to_the_handler() {
    let h = line::harness();
    proptest!(config(), |(events in line::line_events())| {
        line::check_round_trip(&h, &events)?;
    });
}

#[test]
fn mutated_signed_bodies_get_200_or_400_and_never_panic() {
    let h = line::harness();
    proptest!(config(), |(events in line::line_events(), mutations in fuzzing::mutations())| {
        line::check_signed_mutation(&h, &events, &mutations)?;
    });
}

#[test]
fn arbitrary_signed_bytes_get_200_or_400() {
    let h = line::harness();
    proptest!(config(), |(body in fuzzing::arbitrary_body())| {
        line::check_signed_body(&h, &body)?;
    });
}

#[test]
fn arbitrary_bytes_with_arbitrary_signatures_get_401() {
    let h = line::harness();
    proptest!(config(), |(
        body in fuzzing::arbitrary_body(),
        signature in prop::option::of(fuzzing::arbitrary_header_value()),
    )| {
        line::check_unsigned(&h, &body, signature.as_deref())?;
    });
}

#[test]
fn tampered_signatures_never_verify() {
    let h = line::harness();
    proptest!(config(), |(events in line::line_events(), tamper in line::tamper())| {
        line::check_tamper(&h, &events, &tamper)?;
    });
}
