//! The Send API client against the fake Graph API: retries under injected 429, 5xx and Graph
//! errors, typed refusals, time-outs, rate limits, sender actions, profiles and message types.

mod support;

use std::time::{Duration, Instant};

use bot_core::outbound::Target;
use bot_core::testing::fake_api::{FakeResponse, Fault, Latency};
use bot_core::{ConversationId, Outbound, OutgoingMessage};
use bot_messenger::model::send::{
    GraphError, Message, MessageTag, MessagingType, Recipient, SenderAction,
};
use bot_messenger::testing::{FakeMessenger, graph_error};
use bot_messenger::{ConfigureApi, ErrorKind, MessengerClient, MessengerClientBuilder, RateLimits};
use http::StatusCode;
use support::fast_retries;

fn client(fake: &FakeMessenger) -> MessengerClientBuilder {
    MessengerClient::builder(support::PAGE_TOKEN)
        .api_base(fake.url())
        .retry(fast_retries(3))
}

fn psid() -> Recipient {
    Recipient::Id("24386871164263049".into())
}

// ANCHOR: retries
#[tokio::test]
async fn statuses_429_and_5xx_are_retried_until_the_call_succeeds() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    fake.api()
        .inject(Fault::status(StatusCode::TOO_MANY_REQUESTS));
    fake.api()
        .inject(Fault::status(StatusCode::SERVICE_UNAVAILABLE));
    let client = client(&fake).build().unwrap();

    let sent = client
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap();

    assert!(sent.message_id.unwrap().starts_with("m_"));
    let statuses: Vec<u16> = fake.messages().iter().map(|m| m.status.as_u16()).collect();
    assert_eq!(statuses, [429, 503, 200]);
}

#[tokio::test]
async fn the_client_gives_up_after_the_configured_attempts_with_a_typed_error() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    fake.api()
        .inject(Fault::status(StatusCode::SERVICE_UNAVAILABLE).times(10));
    let client = client(&fake).build().unwrap();

    let error = client
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(error.attempts(), 3);
    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(!error.maybe_delivered());
    assert_eq!(fake.api().call_count(), 3);
    // The runtime may still retry the handler later: a server error is not permanent.
    assert!(bot_core::Error::from(error).is_retryable());
}
// ANCHOR_END: retries

#[tokio::test]
async fn other_server_errors_may_hide_a_sent_message_and_are_not_resent() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake).build().unwrap();
    let faults = [
        Fault::status(StatusCode::BAD_GATEWAY),
        Fault::status(StatusCode::GATEWAY_TIMEOUT),
        Fault::status(StatusCode::INTERNAL_SERVER_ERROR),
        graph_error(StatusCode::INTERNAL_SERVER_ERROR, 1, None),
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        fake.api().inject(fault.times(3));
        let error = client
            .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
            .await
            .unwrap_err();
        assert_eq!((error.kind(), error.attempts()), (ErrorKind::Server, 1));
        assert!(error.maybe_delivered(), "{error}");
        assert!(!bot_core::Error::from(error).is_retryable());
        assert_eq!(fake.api().call_count(), i * 4 + 1, "one call");
        // Sender actions are idempotent: retried through the two faults left.
        client
            .sender_action(&psid(), SenderAction::TypingOn)
            .await
            .unwrap();
        assert_eq!(fake.api().call_count(), i * 4 + 4);
    }
}

#[tokio::test]
async fn persistent_429s_end_as_rate_limited() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    fake.api()
        .inject(Fault::status(StatusCode::TOO_MANY_REQUESTS).times(10));
    let error = client(&fake)
        .build()
        .unwrap()
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind(), error.attempts()),
        (ErrorKind::RateLimited, 3)
    );
    assert_eq!(
        bot_core::Error::from(error).kind(),
        bot_core::ErrorKind::RateLimited
    );
}

#[tokio::test]
async fn graph_rate_limit_and_temporary_codes_are_retried_whatever_the_status() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    fake.api()
        .inject(graph_error(StatusCode::BAD_REQUEST, 613, None));
    fake.api()
        .inject(graph_error(StatusCode::FORBIDDEN, 4, None));
    fake.api()
        .inject(graph_error(StatusCode::INTERNAL_SERVER_ERROR, 1200, None));
    fake.api()
        .inject(graph_error(StatusCode::BAD_REQUEST, 2, None));
    let client = client(&fake).retry(fast_retries(5)).build().unwrap();
    client
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap();
    assert_eq!(fake.api().call_count(), 5);
}

#[tokio::test]
async fn business_use_case_throttling_is_a_retried_rate_limit() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    for code in [80_001, 80_002, 80_006] {
        fake.api()
            .inject(graph_error(StatusCode::BAD_REQUEST, code, None));
    }
    let client = client(&fake).retry(fast_retries(5)).build().unwrap();
    client
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap();
    assert_eq!(fake.api().call_count(), 4, "three refusals, then sent");

    // With X-Business-Use-Case-Usage, its estimate (minutes) is the hint: longer than the
    // deadline, so the client hands it to the runtime at once.
    let usage = r#"{"106000000000001": [{"type": "messenger", "call_count": 100, "total_cputime": 20, "total_time": 25, "estimated_time_to_regain_access": 2}]}"#;
    fake.api().inject(
        graph_error(StatusCode::BAD_REQUEST, 80_006, None)
            .header("x-business-use-case-usage", usage),
    );
    let error = client
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind(), error.attempts(), error.retry_after()),
        (ErrorKind::RateLimited, 1, Some(Duration::from_secs(120)))
    );
    assert_eq!(error.details::<GraphError>().unwrap().code, 80_006);
    assert!(!error.maybe_delivered());
    let core = bot_core::Error::from(error);
    assert!(core.is_retryable());
    assert_eq!(core.kind(), bot_core::ErrorKind::RateLimited);
    assert_eq!(core.retry_after(), Some(Duration::from_secs(120)));
}

#[tokio::test]
async fn refusals_are_typed_permanent_and_not_retried() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake).build().unwrap();
    let cases = [
        (190, None, ErrorKind::Authentication),
        (100, Some(2_018_001), ErrorKind::UserNotFound),
        (10, Some(2_018_278), ErrorKind::OutsideWindow),
        (551, None, ErrorKind::UserUnavailable),
        (100, None, ErrorKind::Api),
    ];
    for (i, (code, subcode, kind)) in cases.into_iter().enumerate() {
        fake.api()
            .inject(graph_error(StatusCode::BAD_REQUEST, code, subcode));
        let error = client
            .send_message(&psid(), &Message::text("hi"), &MessagingType::Response)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), kind, "{error}");
        assert_eq!(error.attempts(), 1);
        let graph = error.details::<GraphError>().unwrap();
        assert_eq!((graph.code, graph.error_subcode), (code, subcode));
        assert!(graph.fbtrace_id.is_some());
        assert!(!error.is_retryable());
        assert!(!bot_core::Error::from(error).is_retryable());
        assert_eq!(fake.api().call_count(), i + 1, "one call each");
    }
}

#[tokio::test]
async fn the_fake_checks_the_page_token() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let wrong = MessengerClient::builder("another-token")
        .api_base(fake.url())
        .build()
        .unwrap();
    let error = wrong
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Authentication);
    assert_eq!(fake.messages()[0].bearer.as_deref(), Some("another-token"));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    fake.api()
        .inject(Fault::status(StatusCode::TOO_MANY_REQUESTS).header("retry-after", "1"));
    let client = client(&fake)
        .retry(bot_core::RetryPolicy {
            max_backoff: Duration::from_secs(5),
            ..fast_retries(2)
        })
        .build()
        .unwrap();
    let started = Instant::now();
    client
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.api().call_count(), 2);
}

#[tokio::test]
async fn a_call_and_its_retries_end_at_the_deadline() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    fake.api()
        .set_latency(Latency::Fixed(Duration::from_secs(5)));
    let client = client(&fake)
        .retry(fast_retries(10))
        .timeout(Duration::from_millis(300))
        .deadline(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = Instant::now();
    // Typing is idempotent, so retried on time-outs: without the deadline, 10 x 300 ms.
    let error = client
        .sender_action(&psid(), SenderAction::TypingOn)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.attempts() <= 2, "{error}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_send_with_typing_ends_at_one_deadline_typing_included() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    fake.api()
        .set_latency(Latency::Fixed(Duration::from_millis(600)));
    let deadline = Duration::from_secs(1);
    let client = client(&fake)
        .timeout(Duration::from_secs(10))
        .deadline(deadline)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    // The typing indicator takes 600 ms of the second; the message gets the 400 ms left, not a
    // second of its own.
    let error = client
        .send(
            &Target::conversation("24386871164263049"),
            vec![OutgoingMessage::typing().with_text("hi")],
        )
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed <= deadline + Duration::from_millis(50),
        "{elapsed:?}"
    );
    assert_eq!(error.kind(), bot_core::ErrorKind::Timeout, "{error}");
    assert_eq!(fake.sender_actions().len(), 1, "typing went first");
}

/// Two attempts of one handler send the same reply at once (a redelivery while the first still
/// runs); the first's call is answered `first_answer` after 500 ms. Returns both results and the
/// statuses of the message calls the fake saw.
async fn concurrent_attempts(
    first_answer: Option<Fault>,
) -> (
    Result<(), bot_core::Error>,
    Result<(), bot_core::Error>,
    Vec<u16>,
) {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    fake.api()
        .set_latency(Latency::Fixed(Duration::from_millis(500)));
    if let Some(fault) = first_answer {
        fake.api().inject(fault.times(1));
    }
    let client = client(&fake).retry(fast_retries(1)).build().unwrap();
    let mut target = Target::conversation("24386871164263049");
    target.origin = Some(bot_core::EventId::new("mid.1"));
    let messages = || vec![OutgoingMessage::text("once")];
    let (first, second) = tokio::join!(client.send(&target, messages()), async {
        tokio::task::yield_now().await;
        client.send(&target, messages()).await
    });
    let statuses = fake.messages().iter().map(|m| m.status.as_u16()).collect();
    (first, second, statuses)
}

#[tokio::test(start_paused = true)]
async fn a_concurrent_attempt_skips_a_part_the_first_made_and_sends_one_it_did_not() {
    let (first, second, statuses) = concurrent_attempts(None).await;
    assert!(first.is_ok() && second.is_ok());
    assert_eq!(statuses, [200], "made once, by the first attempt");

    // The first attempt's call is refused (a 503 carried out nothing): the second, which
    // waited for that outcome instead of skipping the part, sends it.
    let refused = Fault::status(StatusCode::SERVICE_UNAVAILABLE);
    let (first, second, statuses) = concurrent_attempts(Some(refused)).await;
    assert!(first.is_err());
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(statuses, [503, 200]);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_time_left_is_handed_to_the_runtime() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    fake.api()
        .inject(Fault::status(StatusCode::TOO_MANY_REQUESTS).header("retry-after", "60"));
    let started = Instant::now();
    let error = client(&fake)
        .build()
        .unwrap()
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        (error.kind(), error.attempts(), error.retry_after()),
        (ErrorKind::RateLimited, 1, Some(Duration::from_secs(60)))
    );
    let core = bot_core::Error::from(error);
    assert!(core.is_retryable());
    assert_eq!(core.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(fake.api().call_count(), 1);
}

#[tokio::test]
async fn timed_out_messages_are_not_resent_but_idempotent_calls_are_retried() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    fake.api()
        .set_latency(Latency::Fixed(Duration::from_secs(5)));
    let client = client(&fake)
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();

    let message = client
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap_err();
    assert_eq!(
        (message.kind(), message.attempts()),
        (ErrorKind::Timeout, 1)
    );
    assert!(message.maybe_delivered(), "the request went out");
    // Outside a reply nothing remembers the message as sent: a retried handler would send it
    // again, so the bot error is permanent.
    assert!(!bot_core::Error::from(message).is_retryable());

    let typing = client
        .sender_action(&psid(), SenderAction::TypingOn)
        .await
        .unwrap_err();
    assert_eq!((typing.kind(), typing.attempts()), (ErrorKind::Timeout, 3));
    let profile = client.profile("24386871164263049").await.unwrap_err();
    assert_eq!(
        (profile.kind(), profile.attempts()),
        (ErrorKind::Timeout, 3)
    );
}

#[tokio::test]
async fn refused_connections_are_retried_since_nothing_was_sent() {
    // Bound but not listening, and held for the whole test: connections are refused, and no
    // other test can take the port meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = format!("http://{}", socket.local_addr().unwrap());
    let client = MessengerClient::builder(support::PAGE_TOKEN)
        .api_base(closed)
        .retry(fast_retries(3))
        .build()
        .unwrap();
    let error = client
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap_err();
    assert_eq!((error.kind(), error.attempts()), (ErrorKind::Transport, 3));
    assert!(!error.maybe_delivered());
    assert!(!format!("{error:?}").contains(support::PAGE_TOKEN));
    drop(socket);
}

#[tokio::test]
async fn the_rate_limiter_spaces_calls_out() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake)
        .rate_limits(RateLimits {
            send_per_second: 5,
            ..RateLimits::default()
        })
        .build()
        .unwrap();
    let started = Instant::now();
    for i in 0..8 {
        client
            .send_message(
                &psid(),
                &Message::text(format!("{i}")),
                &MessagingType::Update,
            )
            .await
            .unwrap();
    }
    // A burst of 5, then one call every 200 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.messages().len(), 8);
}

#[tokio::test]
async fn typing_is_a_typing_on_sender_action_sent_alone() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake).build().unwrap();
    client
        .typing(&ConversationId::new("24386871164263049"))
        .await
        .unwrap();
    client
        .sender_action(&psid(), SenderAction::MarkSeen)
        .await
        .unwrap();
    let actions = fake.sender_actions();
    let got: Vec<(&str, Option<&str>)> = actions
        .iter()
        .map(|a| (a.action.as_str(), a.recipient_id.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("typing_on", Some("24386871164263049")),
            ("mark_seen", Some("24386871164263049"))
        ]
    );
    assert!(fake.messages().is_empty(), "no message goes with an action");
}

#[tokio::test]
async fn profiles_are_read_and_odd_ids_refused_before_sending() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake).build().unwrap();
    let profile = client.profile("24386871164263049").await.unwrap();
    assert_eq!(profile.id, "24386871164263049");
    assert_eq!(profile.first_name.as_deref(), Some("User"));
    let call = &fake.api().calls()[0].request;
    assert_eq!(
        call.query_param("fields"),
        Some("first_name,last_name,profile_pic")
    );
    assert_eq!(
        client.profile("../me/messages").await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    assert_eq!(fake.api().call_count(), 1);
}

#[tokio::test]
async fn tags_updates_and_long_texts() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake).build().unwrap();
    client
        .send_message(
            &psid(),
            &Message::text("an agent will call"),
            &MessagingType::MessageTag(MessageTag::HumanAgent),
        )
        .await
        .unwrap();
    // Not a reply: UPDATE. 4,500 characters: three messages, in order.
    let long = "word ".repeat(900);
    client
        .send(
            &Target::conversation("24386871164263049"),
            vec![OutgoingMessage::text(long.clone())],
        )
        .await
        .unwrap();
    let sent = fake.messages();
    assert_eq!(sent[0].messaging_type.as_deref(), Some("MESSAGE_TAG"));
    assert_eq!(sent[0].tag.as_deref(), Some("HUMAN_AGENT"));
    assert_eq!(sent.len(), 4);
    let parts: Vec<&str> = sent[1..].iter().map(|m| m.text().unwrap()).collect();
    assert_eq!(parts.concat(), long);
    assert!(
        sent[1..]
            .iter()
            .all(|m| m.messaging_type.as_deref() == Some("UPDATE"))
    );
    assert!(sent.iter().all(|m| m.status == StatusCode::OK));
}

/// A target with a message tag (what an outbox message with `message_tag` sends) goes as
/// `MESSAGE_TAG` with its tag, through the `Outbound` trait.
#[tokio::test]
async fn a_tagged_target_sends_a_message_tag() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake).build().unwrap();
    client
        .send(
            &Target::conversation("24386871164263049").tagged("POST_PURCHASE_UPDATE"),
            vec![OutgoingMessage::text("your parcel left the warehouse")],
        )
        .await
        .unwrap();
    let sent = fake.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].messaging_type.as_deref(), Some("MESSAGE_TAG"));
    assert_eq!(sent[0].tag.as_deref(), Some("POST_PURCHASE_UPDATE"));
}

#[tokio::test]
async fn a_send_that_is_no_reply_fails_for_good_once_a_part_went_out() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake).build().unwrap();
    let to = Target::conversation("24386871164263049");
    let long = format!("{}the second part", "a ".repeat(999));
    let unavailable =
        || FakeResponse::json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({}));

    // Part 1 fails: nothing went out, so the runtime may retry.
    fake.refuse_texts_containing("a a", unavailable(), 3);
    let error = client
        .send(&to, vec![OutgoingMessage::text(long.clone())])
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(fake.messages().len(), 3);

    // Part 2 fails after part 1 went out: with no event to remember part 1 by, a retry would
    // send it twice, so the error is permanent.
    fake.refuse_texts_containing("the second part", unavailable(), 3);
    let error = client
        .send(&to, vec![OutgoingMessage::text(long)])
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    let statuses: Vec<u16> = fake.messages()[3..]
        .iter()
        .map(|m| m.status.as_u16())
        .collect();
    assert_eq!(statuses, [200, 503, 503, 503]);
}

#[tokio::test]
async fn the_fake_refuses_what_the_send_api_refuses() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake).build().unwrap();
    let empty = client
        .send_message(
            &psid(),
            &Message::from_json(serde_json::json!({})),
            &MessagingType::Update,
        )
        .await
        .unwrap_err();
    assert_eq!(empty.kind(), ErrorKind::Api);
    let untagged = client
        .send_message(
            &psid(),
            &Message::from_json(serde_json::json!({"text": "x", "attachment": {"type": "image"}})),
            &MessagingType::Update,
        )
        .await
        .unwrap_err();
    assert_eq!(untagged.details::<GraphError>().unwrap().code, 100);
    assert_eq!(fake.api().call_count(), 2);
}

/// A server that answers every request with 200, a `Content-Length` of 100 and a body that breaks
/// off after one byte.
async fn broken_answers() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // The test's server: it lives as long as the test's runtime.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read the whole request (headers, then Content-Length bytes of body) first.
            while let Ok(n) = socket.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
                .await;
            let _ = socket.shutdown().await;
        }
    });
    url
}

#[tokio::test]
async fn a_2xx_whose_answer_breaks_off_is_a_sent_message() {
    let client = MessengerClient::builder(support::PAGE_TOKEN)
        .api_base(broken_answers().await)
        .retry(fast_retries(3))
        .build()
        .unwrap();
    let sent = client
        .send_message(&psid(), &Message::text("hi"), &MessagingType::Update)
        .await
        .unwrap();
    assert_eq!(sent.message_id, None, "sent, only the id is lost");
    // A profile needs its answer: that read fails (and is retried).
    let profile = client.profile("24386871164263049").await.unwrap_err();
    assert_eq!(profile.attempts(), 3);
}
