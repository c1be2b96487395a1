//! What a LINE reply in flight holds in its futures, in bytes: the send's boxed future (the reply
//! and the client core's call inline) and the client core's call. These are held by every
//! running event for the seconds the API takes to answer (BENCHMARKS.md, `slow-api`): a bound
//! here fails when one of them grows back.
//!
//! Run with: cargo test -p bot-line --test future_sizes
//!
//! Sizes in bytes depend on the target, on the compiler's layout of futures and on the versions
//! of h2, tokio and url: the bounds were measured on x86-64 in the dev profile, which CI's tests
//! use. When one fails after a toolchain or dependency upgrade, measure again and update
//! BENCHMARKS.md's figures.
#![cfg(all(target_pointer_width = "64", debug_assertions))]

use bot_core::Outbound as _;
use bot_core::api::Call;
use bot_core::event::{EventId, ReplyToken};
use bot_core::outbound::Target;
use bot_line::LineClient;

fn reply_target() -> Target {
    let mut target = Target::conversation(format!("U{:032x}", 1));
    target.reply_token = Some(ReplyToken::new("0f3779fba3b349968c5d07db31eab56f"));
    target.in_reply_to = Some(EventId::new("01FZ74A0TDDPYRVKNK77XKC3ZR"));
    target.origin = target.in_reply_to.clone();
    target
}

#[test]
fn a_reply_in_flight_is_small() {
    let client = LineClient::builder("token").build().expect("a client");
    let send = client.send_owned(reply_target(), vec!["ok".into()]);
    let send_bytes = std::mem::size_of_val(&*send);
    let call = client
        .api()
        .call(Call::post("reply", "/v2/bot/message/reply"));
    let call_bytes = std::mem::size_of_val(&call);
    println!(
        "LineClient::send's boxed future: {send_bytes} bytes; ApiClient::call's future: \
         {call_bytes} bytes"
    );
    // The client core's call holds the call once (its body, path and key, for a retry), and
    // the answer's future with its time-out's slot in the transport's deadlines (16 bytes; a
    // Tokio timer of its own was 112) and the connection's flag; a call to the
    // client's base holds no URL (the path goes out as the call has it); the stream's opening,
    // the answer's reading and the HTTP/1.1 fallback are boxed apart, and the attempt runs in
    // the call's own future. Each `async fn` layer between them held the 200-byte call again,
    // and the opening's head and connection, the answer's head and body's reading, the URL, the
    // idempotency header and the platform's name set the size of every call in flight (1,680
    // bytes in a debug build, then 1,384, then 576; 480 since).
    let call_struct = std::mem::size_of::<Call>();
    assert!(
        call_bytes <= 500,
        "ApiClient::call's future is {call_bytes} bytes (a Call is {call_struct})"
    );
    // The LINE send around it: the reply's bookkeeping (its mark, deadline and scope) and the
    // parts of the target it took (the conversation, the reply token and the send's name, 128
    // bytes; the handler held the whole 248-byte target for it before), not another copy of
    // the call, nor the room of the paths a reply rarely takes (the loading animation, the
    // pushes, which are boxed apart: 2,056 bytes when they were inline; 848 since, 976 with
    // the target's parts), nor the wait for a concurrent attempt's reply mark (boxed apart:
    // 880 since, with the call's 480).
    assert!(
        send_bytes <= call_bytes + 400,
        "LineClient::send's future is {send_bytes} bytes, the call's {call_bytes}"
    );
}
