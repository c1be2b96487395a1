//! Property tests of the Messenger webhook: the subscription handshake, the
//! `X-Hub-Signature-256` check, body parsing and mapping to core events, driven in-process
//! through the webhook router. Arbitrary and mutated bodies never panic and get 200/400/401/413,
//! valid items round-trip to the handler, tampered signatures never verify.
//!
//! The same strategies and checks run by the million in `cargo run --release -p bench --bin
//! fuzz-run` (see the book's "Reliability: property tests and fuzzing").

#[path = "../../bot-core/tests/support/fuzzing.rs"]
mod fuzzing;
mod props_cases;

use proptest::prelude::*;
use proptest::test_runner::Config;

use props_cases as messenger;

fn config() -> Config {
    Config {
        // Failures print their input; no regression files are written into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

#[test]
fn valid_items_round_trip_to_the_handler() {
    let h = messenger::harness();
    proptest!(config(), |(entries in messenger::entries())| {
        messenger::check_round_trip(&h, &entries)?;
    });
}

#[test]
fn mutated_signed_bodies_get_200_or_400_and_never_panic() {
    let h = messenger::harness();
    proptest!(config(), |(entries in messenger::entries(), mutations in fuzzing::mutations())| {
        messenger::check_signed_mutation(&h, &entries, &mutations)?;
    });
}

#[test]
fn arbitrary_signed_bytes_get_200_or_400() {
    let h = messenger::harness();
    proptest!(config(), |(body in fuzzing::arbitrary_body())| {
        messenger::check_signed_body(&h, &body)?;
    });
}

#[test]
fn arbitrary_bytes_with_arbitrary_signatures_get_401() {
    let h = messenger::harness();
    proptest!(config(), |(
        body in fuzzing::arbitrary_body(),
        signature in prop::option::of(fuzzing::arbitrary_header_value()),
    )| {
        messenger::check_unsigned(&h, &body, signature.as_deref())?;
    });
}

#[test]
fn tampered_signatures_never_verify() {
    let h = messenger::harness();
    proptest!(config(), |(entries in messenger::entries(), tamper in messenger::tamper())| {
        messenger::check_tamper(&h, &entries, &tamper)?;
    });
}

#[test]
fn the_subscription_handshake_answers_the_challenge_only_to_the_right_token() {
    let h = messenger::harness();
    proptest!(config(), |(params in messenger::subscription())| {
        messenger::check_subscription(&h, &params)?;
    });
}

#[test]
fn arbitrary_handshake_queries_get_200_or_403() {
    let h = messenger::harness();
    proptest!(config(), |(query in messenger::raw_query())| {
        messenger::check_raw_subscription(&h, &query)?;
    });
}
