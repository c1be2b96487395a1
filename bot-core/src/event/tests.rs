use std::time::SystemTime;

use super::*;

#[test]
fn event_round_trips_through_json_with_raw_payload() {
    let e = Event::text(Platform::LINE, "U123", "hi")
        .with_id("01H")
        .with_sender("U123")
        .with_reply_token(ReplyToken::new("rt"))
        .with_raw(serde_json::json!({"type": "message", "x": 1}));
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["kind"]["type"], "message");
    assert_eq!(json["kind"]["text"], "hi");
    assert_eq!(json["raw"]["x"], 1);
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, e);
}

#[test]
fn raw_json_text_is_kept_whole_read_on_demand_and_embedded_when_serialised() {
    let text = r#"{"type":"message","message":{"id":"m1","text":"hé \"q\""},"n":[1,2.5]}"#;
    let json = serde_json::value::RawValue::from_string(text.to_owned()).unwrap();
    let e = Event::text(Platform::LINE, "U1", "hi")
        .with_id("e1")
        .with_raw_json(json);
    assert_eq!(e.raw.json(), text);
    #[derive(Deserialize)]
    struct Typed {
        message: serde_json::Map<String, serde_json::Value>,
    }
    let typed: Typed = e.raw.parse().unwrap();
    assert_eq!(typed.message["text"], "hé \"q\"");
    assert_eq!(e.raw()["n"][1], 2.5);

    let out = serde_json::to_string(&e).unwrap();
    assert!(out.contains(&format!(r#""raw":{text}"#)), "{out}");
    let back: Event = serde_json::from_str(&out).unwrap();
    assert_eq!(back.raw.json(), text);
    assert_eq!(back, e);
    let via_value: Event = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
    assert_eq!(via_value.raw(), e.raw());

    let tree = Event::text(Platform::LINE, "U1", "hi").with_raw(serde_json::json!({"a": [1]}));
    assert_eq!(tree.raw.json(), r#"{"a":[1]}"#);
    let none = Event::text(Platform::LINE, "U1", "hi");
    assert_eq!(none.raw(), &serde_json::Value::Null);
    assert_eq!(none.raw.json(), "null");
    let out = serde_json::to_string(&none).unwrap();
    assert!(out.contains(r#""raw":null"#), "{out}");
    let back: Event = serde_json::from_str(&out).unwrap();
    assert_eq!(back, none);
}

#[test]
fn other_kind_keeps_its_name() {
    let e = Event::new(
        Platform::LINE,
        "c",
        EventKind::Other(Other {
            name: "things".into(),
        }),
    );
    assert_eq!(e.kind.name(), "things");
    let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(back.kind, e.kind);
}

#[test]
fn reply_token_is_redacted_in_debug() {
    assert_eq!(format!("{:?}", ReplyToken::new("secret")), "ReplyToken(..)");
}

#[test]
fn event_debug_shows_the_raw_payloads_size_not_its_tokens() {
    let e = Event::text(Platform::LINE, "U1", "hi")
        .with_reply_token(ReplyToken::new("reply-secret"))
        .with_raw(serde_json::json!({"replyToken": "reply-secret", "token": "itoken-secret"}));
    let shown = format!("{e:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("Raw(53 bytes)"), "{shown}");
    assert_eq!(format!("{:?}", Raw::default()), "Raw(none)");
}

#[test]
fn timestamps_convert_both_ways() {
    let t = Timestamp::from_millis(1_700_000_000_123);
    assert_eq!(Timestamp::from(SystemTime::from(t)), t);
}

#[test]
fn content_ids_are_stable_and_tell_payloads_apart() {
    let a = content_id(&serde_json::json!({"type": "read", "watermark": 1}));
    assert_eq!(
        a,
        content_id(&serde_json::json!({"watermark": 1, "type": "read"}))
    );
    assert_ne!(
        a,
        content_id(&serde_json::json!({"type": "read", "watermark": 2}))
    );
    assert!(a.as_str().starts_with("sha256:") && a.as_str().len() == 39);
    let e = Event::from_platform(Platform::LINE, "01H", "U1", EventKind::Followed);
    assert_eq!((e.id.as_str(), e.conversation.as_str()), ("01H", "U1"));
}

#[test]
fn local_ids_are_unique() {
    let a = Event::text(Platform::TEST, "c", "a");
    let b = Event::text(Platform::TEST, "c", "b");
    assert_ne!(a.id, b.id);
}

#[test]
fn public_types_are_send_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Event>();
    assert_send_sync::<Platform>();
}

#[test]
fn an_event_is_one_pointer_and_its_clones_share_its_data() {
    assert_eq!(std::mem::size_of::<Event>(), std::mem::size_of::<usize>());
    assert_eq!(
        std::mem::size_of::<Option<Event>>(),
        std::mem::size_of::<usize>()
    );
    // The block the book gives (472 bytes with its two counts, on 64-bit targets): when the
    // data grows, update book/src/concepts/events.md and operations/performance.md.
    #[cfg(target_pointer_width = "64")]
    assert!(
        std::mem::size_of::<EventData>() + 16 <= 472,
        "the event's block is {} bytes",
        std::mem::size_of::<EventData>() + 16
    );
    let e = Event::text(Platform::LINE, "U1", "hello").with_sender("U1");
    let c = e.clone();
    assert!(c.ptr_eq(&e));
    assert!(std::ptr::eq(c.data(), e.data()));
    assert_eq!(c, e);
    // Equal data in two blocks is still equal.
    let copy = Event::from(e.data().clone());
    assert!(!copy.ptr_eq(&e));
    assert_eq!(copy, e);
}

#[test]
fn a_change_through_one_handle_copies_first_when_the_data_is_shared() {
    let mut e = Event::text(Platform::LINE, "U1", "hello");
    let block = std::ptr::from_ref(e.data());
    // Alone: changed in place, no copy.
    e.redelivered = true;
    assert!(std::ptr::eq(block, e.data()));
    let kept = e.clone();
    e.redelivered = false;
    if let EventKind::Message(m) = &mut e.kind {
        m.text = Some("changed".into());
    }
    assert!(!e.ptr_eq(&kept), "the shared block was changed in place");
    assert!(kept.redelivered);
    assert_eq!(kept.text_content(), Some("hello"));
    assert_eq!(e.text_content(), Some("changed"));
    assert!(!e.redelivered);
    // The builders change their own handle only.
    let other = kept.clone().with_id("x");
    assert_eq!(other.id.as_str(), "x");
    assert_ne!(kept.id.as_str(), "x");
}

#[test]
fn into_data_moves_the_fields_out_when_alone_and_copies_them_when_shared() {
    let e = Event::text(Platform::LINE, "U1", "a text longer than any inline id");
    let text = e.text_content().unwrap().as_ptr();
    let data = e.into_data();
    assert_eq!(
        data.text_content().unwrap().as_ptr(),
        text,
        "copied though alone"
    );

    let e = Event::from(data);
    let kept = e.clone();
    let data = EventData::from(e);
    assert_ne!(data.text_content().unwrap().as_ptr(), text);
    assert_eq!(&data, kept.data());
    assert_eq!(kept.text_content().unwrap().as_ptr(), text);
}

#[test]
fn an_event_serializes_and_prints_as_its_data() {
    let e = Event::text(Platform::LINE, "U1", "hi")
        .with_id("01H")
        .with_sender("U1")
        .with_reply_token(ReplyToken::new("rt"))
        .with_raw(serde_json::json!({"type": "message"}));
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(json, serde_json::to_string(e.data()).unwrap());
    let data: EventData = serde_json::from_str(&json).unwrap();
    assert_eq!(&data, e.data());
    let back: Event = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
    let bad = serde_json::from_str::<Event>(r#"{"id": 1}"#).unwrap_err();
    assert!(!bad.to_string().is_empty());
    // `Debug` as before: the event's name, then its fields.
    let printed = format!("{e:?}");
    assert!(printed.starts_with("Event { id: "), "{printed}");
    assert_eq!(
        printed,
        format!("{:?}", e.data()).replacen("EventData", "Event", 1)
    );
}

/// The wire format the PostgreSQL and NATS queues store, pinned: events written before the
/// event became a handle (and by other versions) must still be read, and written the same.
#[test]
fn the_wire_format_is_pinned() {
    let e = Event::text(Platform::LINE, "U1", "hi")
        .with_id("01H")
        .with_sender("U2")
        .with_reply_token(ReplyToken::new("rt"));
    let mut data = e.into_data();
    data.occurred_at = Timestamp::from_millis(1_700_000_000_000);
    let e = Event::from(data).with_raw(serde_json::json!({"type": "message"}));
    let json = serde_json::to_string(&e).unwrap();
    // Written by the derive of 75077ee's `Event`, the fields in declaration order.
    assert_eq!(json, WIRE);
    let back: Event = serde_json::from_str(WIRE).unwrap();
    assert_eq!(back, e);
    // The optional fields absent, `redelivered` and `raw` left out: their defaults.
    let minimal = r#"{"id":"1","platform":"line","conversation":"c","kind":{"type":"other","name":"x"},"occurred_at":0}"#;
    let back: Event = serde_json::from_str(minimal).unwrap();
    assert!(back.channel.is_none() && back.sender.is_none() && back.reply_token.is_none());
    assert!(!back.redelivered);
    assert_eq!(back.raw(), &serde_json::Value::Null);
}

const WIRE: &str = r#"{"id":"01H","platform":"line","conversation":"U1","sender":"U2","kind":{"type":"message","text":"hi"},"reply_token":"rt","occurred_at":1700000000000,"redelivered":false,"raw":{"type":"message"}}"#;
