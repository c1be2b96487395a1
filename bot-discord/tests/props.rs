//! Property tests of what Discord sends: the HTTP interactions endpoint (Ed25519 verification,
//! parsing, mapping, answers), gateway frames (parsing and dispatch mapping) and zlib-stream
//! inflation. Arbitrary and mutated input never panics and gets a clear error (endpoint: 200, 400,
//! 401 or 413), valid input round-trips, tampered signatures never verify, any framing of a
//! compressed stream inflates to the same messages, and inflated messages stay within the limit.
//!
//! The same strategies and checks run by the million in `cargo run --release -p bench --bin
//! fuzz-run` (see the book's "Reliability: property tests and fuzzing").

#[path = "../../bot-core/tests/support/fuzzing.rs"]
mod fuzzing;
mod props_cases;

use bot_discord::gateway::fuzz::FrameReader;
use proptest::prelude::*;
use proptest::test_runner::Config;

use props_cases as discord;

fn config() -> Config {
    Config {
        // Failures print their input; no regression files are written into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Fewer cases where each signs and verifies Ed25519 (slow in the dev profile); the fuzz run
/// makes up for it in release.
fn signed_config() -> Config {
    Config {
        cases: 64,
        ..config()
    }
}

#[test]
fn valid_interactions_round_trip_to_the_handler_and_its_answer() {
    let h = discord::harness();
    proptest!(signed_config(), |(interaction in discord::interaction())| {
        discord::check_interaction_round_trip(&h, &interaction)?;
    });
}

#[test]
fn mutated_signed_interactions_get_200_or_400_and_never_panic() {
    let h = discord::harness();
    proptest!(signed_config(), |(interaction in discord::interaction(), mutations in fuzzing::mutations())| {
        discord::check_interaction_mutation(&h, &interaction, &mutations)?;
    });
}

#[test]
fn arbitrary_signed_bytes_get_200_or_400() {
    let h = discord::harness();
    proptest!(signed_config(), |(body in fuzzing::arbitrary_body())| {
        discord::check_signed_interaction(&h, &body)?;
    });
}

#[test]
fn arbitrary_bytes_with_arbitrary_signatures_get_401() {
    let h = discord::harness();
    proptest!(config(), |(
        body in fuzzing::arbitrary_body(),
        signature in prop::option::of(fuzzing::arbitrary_header_value()),
        timestamp in prop::option::of(fuzzing::arbitrary_header_value()),
    )| {
        discord::check_interaction_unsigned(&h, &body, signature.as_deref(), timestamp.as_deref())?;
    });
}

#[test]
fn tampered_interaction_signatures_never_verify() {
    let h = discord::harness();
    proptest!(signed_config(), |(interaction in discord::interaction(), tamper in discord::tamper())| {
        discord::check_interaction_tamper(&h, &interaction, &tamper)?;
    });
}

#[test]
fn gateway_frames_round_trip_to_events() {
    proptest!(config(), |(frames in discord::gateway_frames())| {
        discord::check_frames_round_trip(&frames)?;
    });
}

#[test]
fn mutated_gateway_frames_never_panic() {
    proptest!(config(), |(frame in discord::gateway_frame(), mutations in fuzzing::mutations())| {
        discord::check_frame_mutation(&frame, &mutations)?;
    });
}

#[test]
fn dispatches_map_from_the_view_as_from_the_tree() {
    proptest!(config(), |(frame in discord::gateway_frame())| {
        discord::check_view_matches_tree(&frame, None)?;
    });
}

#[test]
fn mutated_dispatches_map_from_the_view_as_from_the_tree() {
    proptest!(Config { cases: 2048, ..config() }, |(frame in discord::gateway_frame(), mutations in fuzzing::mutations())| {
        discord::check_view_matches_tree(&frame, Some(&mutations))?;
    });
}

#[test]
fn dispatches_read_from_their_envelope_map_as_from_the_tree() {
    proptest!(config(), |(frame in discord::gateway_frame())| {
        discord::check_envelope_read_matches_tree(&frame, None)?;
    });
}

#[test]
fn mutated_data_read_from_the_envelope_maps_as_from_the_tree() {
    proptest!(Config { cases: 2048, ..config() }, |(frame in discord::gateway_frame(), mutations in fuzzing::mutations())| {
        discord::check_envelope_read_matches_tree(&frame, Some(&mutations))?;
    });
}

#[test]
fn arbitrary_gateway_bytes_never_panic() {
    proptest!(config(), |(body in fuzzing::arbitrary_body())| {
        discord::check_frame_bytes(&mut FrameReader::default(), &body)?;
    });
}

#[test]
fn any_framing_of_a_zlib_stream_inflates_to_the_same_messages() {
    proptest!(config(), |(messages in discord::zlib_messages(), splits in discord::splits())| {
        discord::check_zlib_split(&messages, &splits)?;
    });
}

#[test]
fn corrupt_zlib_streams_and_garbage_give_errors_not_panics() {
    proptest!(config(), |(
        messages in discord::zlib_messages(),
        mutations in prop::collection::vec(fuzzing::byte_mutation(), 1..4),
        garbage in prop::collection::vec(fuzzing::arbitrary_body(), 0..3),
    )| {
        discord::check_zlib_corrupt(&messages, &mutations, &garbage)?;
    });
}

#[test]
fn truncated_zlib_streams_wait_then_fail_without_panics() {
    proptest!(config(), |(messages in discord::zlib_messages(), cut in any::<prop::sample::Index>())| {
        discord::check_zlib_truncated(&messages, cut)?;
    });
}

#[test]
fn inflated_messages_never_pass_the_limit() {
    proptest!(config(), |((len, limit) in discord::limit_case())| {
        discord::check_zlib_limit(len, limit)?;
    });
}
