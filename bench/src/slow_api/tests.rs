use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bot_core::Secret;
use bot_core::testing::fake_api::{FakeRequest, FakeResponse, Latency};
use reqwest::StatusCode;

use super::REPLY_PATH;
use super::args::{LoadArgs, Query, parse_rate};
use super::outcome::Database;
use super::tally::{Tally, reply_number};
use crate::payload::{Platform, signed};
use crate::scenario::TOKEN;

fn reply_request(body: &str) -> FakeRequest {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    FakeRequest {
        method: reqwest::Method::POST,
        path: REPLY_PATH.to_owned(),
        query: None,
        headers,
        body: body.to_owned().into(),
        received_at: Instant::now(),
    }
}

#[test]
fn reply_tokens_of_the_payloads_map_back_to_their_events() {
    let body = signed(Platform::Line, &Secret::new("s"), 42, 10, 7).body;
    let events = bot_line::event::events_from_body(body.as_bytes()).unwrap();
    let token = events[3].reply_token.as_ref().unwrap().expose().to_owned();
    let call = format!(r#"{{"messages":[{{"type":"text","text":"ok"}}],"replyToken":"{token}"}}"#);
    assert_eq!(reply_number(call.as_bytes()), Some(42 * 1000 + 3));
    assert_eq!(reply_number(br#"{"replyToken":"other"}"#), None);
    assert_eq!(reply_number(b"{}"), None);
}

#[test]
fn the_fake_counts_each_reply_once_and_refuses_a_second_use() {
    let tally = Tally::new(10, 10, 60);
    let ok = FakeResponse::empty(StatusCode::OK);
    let first = reply_request(r#"{"replyToken":"rt0000000000000000000000000007d5"}"#);
    // 0x7d5 = 2005: request 2, event 5.
    assert_eq!(tally.answer(&first, &ok).status, StatusCode::OK);
    assert_eq!(tally.answer(&first, &ok).status, StatusCode::BAD_REQUEST);
    let other = reply_request(r#"{"replyToken":"rt000000000000000000000000000000"}"#);
    assert_eq!(tally.answer(&other, &ok).status, StatusCode::OK);
    // Event 12 of a request of 10 events, and a request past the run, are not ours.
    let stray = reply_request(r#"{"replyToken":"rt00000000000000000000000000000c"}"#);
    assert_eq!(tally.answer(&stray, &ok).status, StatusCode::BAD_REQUEST);
    let late = reply_request(r#"{"replyToken":"rt0000000000000000000000000186a0"}"#);
    assert_eq!(tally.answer(&late, &ok).status, StatusCode::BAD_REQUEST);
    let mut anonymous = first.clone();
    anonymous.headers.clear();
    assert_eq!(
        tally.answer(&anonymous, &ok).status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(tally.replies.load(Ordering::Relaxed), 2);
    assert_eq!(tally.duplicates.load(Ordering::Relaxed), 1);
    assert_eq!(tally.unknown.load(Ordering::Relaxed), 2);
    assert_eq!(
        tally
            .per_second
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>(),
        2
    );
}

#[test]
fn the_database_name_comes_from_the_url() {
    let db = |url: &str| Database {
        url: url.to_owned(),
        pool_size: 1,
        query: Query::Select,
    };
    assert_eq!(db("postgres://postgres@127.0.0.1:5432/test").name(), "test");
    assert_eq!(db("postgres://u@h/bots?sslmode=disable").name(), "bots");
}

#[test]
fn latency_bounds_are_checked() {
    let mut args = LoadArgs {
        rate: 10,
        events_per_request: 10,
        conversations: 100,
        duration: Duration::from_secs(1),
        connections: 1,
        max_in_flight: 10,
        queue_capacity: 10,
        api_latency_min: Duration::from_secs(3),
        api_latency_max: Duration::from_secs(2),
        api_429_rate: 0.0,
        api_500_rate: 0.0,
        drain_timeout: Duration::from_secs(1),
    };
    assert!(args.check().unwrap_err().contains("--api-latency-min"));
    args.api_latency_max = Duration::from_secs(3);
    args.check().unwrap();
    assert_eq!(args.latency(), Latency::Fixed(Duration::from_secs(3)));
    args.api_latency_min = Duration::ZERO;
    args.api_latency_max = Duration::ZERO;
    assert_eq!(args.latency(), Latency::None);
    assert_eq!(args.requests(), 10);
}

#[test]
fn failure_rates_are_shares_between_0_and_1() {
    assert_eq!(parse_rate("0.01"), Ok(0.01));
    assert_eq!(parse_rate("1"), Ok(1.0));
    assert!(parse_rate("1.5").unwrap_err().contains("between 0 and 1"));
    assert!(parse_rate("-0.1").is_err());
    assert!(parse_rate("often").is_err());
}
