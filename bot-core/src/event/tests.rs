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
fn an_event_is_a_handle_of_three_words_and_its_clones_share_its_data() {
    // The block's pointer and length, and the index in it.
    assert_eq!(
        std::mem::size_of::<Event>(),
        3 * std::mem::size_of::<usize>()
    );
    assert_eq!(
        std::mem::size_of::<Option<Event>>(),
        std::mem::size_of::<Event>()
    );
    // The data the book gives for an event (456 bytes, 472 with a block's two counts when alone,
    // on 64-bit targets): when it changes, update book/src/concepts/events.md and
    // operations/performance.md.
    #[cfg(target_pointer_width = "64")]
    assert_eq!(
        std::mem::size_of::<EventData>(),
        456,
        "the book gives an event's data as 456 bytes"
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

fn data(conversation: &str, text: &str) -> EventData {
    Event::text(Platform::LINE, conversation, text).into_data()
}

#[test]
fn a_batch_keeps_its_events_in_order_in_one_block() {
    let batch = Event::batch([data("a", "one"), data("b", "two"), data("c", "three")]);
    assert_eq!(batch.len(), 3);
    let texts: Vec<_> = batch.iter().map(|e| e.text_content().unwrap()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    for e in &batch {
        assert!(e.shares_block_with(&batch[0]));
        assert_eq!(e.block_len(), 3);
    }
    // The data lie side by side in the block, one `EventData` apart.
    let first = std::ptr::from_ref(batch[0].data()) as usize;
    let third = std::ptr::from_ref(batch[2].data()) as usize;
    assert_eq!(third - first, 2 * std::mem::size_of::<EventData>());
    // Siblings are not clones: neither `ptr_eq` nor equal.
    assert!(!batch[0].ptr_eq(&batch[1]));
    assert_ne!(batch[0], batch[1]);
    let clone = batch[1].clone();
    assert!(clone.ptr_eq(&batch[1]) && !clone.ptr_eq(&batch[0]));
    assert_eq!(clone, batch[1]);
    // An event made alone has a block of its own.
    let alone = Event::text(Platform::LINE, "a", "one");
    assert!(!alone.shares_block_with(&batch[0]));
    assert_eq!(alone.block_len(), 1);
    assert!(Event::batch(std::iter::empty()).is_empty());
    // Serialized and printed as its data, whichever its block.
    assert_eq!(
        serde_json::to_string(&batch[2]).unwrap(),
        serde_json::to_string(batch[2].data()).unwrap()
    );
    assert!(format!("{:?}", batch[2]).contains("three"));
}

#[test]
fn a_write_to_one_event_of_a_batch_changes_neither_its_siblings_nor_its_clones() {
    let mut batch = Event::batch([data("a", "one"), data("b", "two"), data("c", "three")]);
    let clone = batch[1].clone();
    let block = std::ptr::from_ref(batch[1].data());
    if let EventKind::Message(m) = &mut batch[1].kind {
        m.text = Some("changed".into());
    }
    batch[1].redelivered = true;
    assert_eq!(batch[1].text_content(), Some("changed"));
    assert!(batch[1].redelivered);
    // Moved into a block of its own; the old one, its siblings' and the clone's, is untouched.
    assert!(!batch[1].shares_block_with(&batch[0]));
    assert_eq!(batch[1].block_len(), 1);
    assert!(std::ptr::eq(block, clone.data()));
    assert_eq!(clone.text_content(), Some("two"));
    assert!(!clone.redelivered);
    assert_eq!(batch[0].text_content(), Some("one"));
    assert_eq!(batch[2].text_content(), Some("three"));
    assert!(!batch[0].redelivered && !batch[2].redelivered);
    // Alone in its new block, the next write is in place.
    let own = std::ptr::from_ref(batch[1].data());
    batch[1].redelivered = false;
    assert!(std::ptr::eq(own, batch[1].data()));
}

#[test]
fn the_last_handle_of_a_batch_writes_in_place() {
    let mut batch = Event::batch([data("a", "one"), data("b", "two")]);
    let last = batch.pop().unwrap();
    drop(batch);
    let mut last = last;
    let at = std::ptr::from_ref(last.data());
    last.redelivered = true;
    assert!(std::ptr::eq(at, last.data()), "copied though alone");
    assert_eq!(last.block_len(), 2);
    assert_eq!(last.text_content(), Some("two"));
}

#[test]
fn into_data_of_a_batch_member_returns_its_own_data() {
    let batch = Event::batch([data("a", "one"), data("b", "two"), data("c", "three")]);
    let kept = batch[0].clone();
    let mut batch = batch.into_iter();
    let first = batch.next().unwrap();
    let second = batch.next().unwrap();
    assert_eq!(second.into_data().text_content(), Some("two"));
    assert_eq!(first.into_data().text_content(), Some("one"));
    assert_eq!(kept.text_content(), Some("one"));
    let third = batch.next().unwrap();
    // The last handle of a block of three: copied out, the block freed with the handle.
    assert_eq!(third.into_data().text_content(), Some("three"));
    // A block of one, shared: copied, and the other handle keeps its data.
    let one = Event::batch([data("d", "four")]).pop().unwrap();
    let other = one.clone();
    assert_eq!(one.into_data().text_content(), Some("four"));
    assert_eq!(other.text_content(), Some("four"));
}

#[test]
fn a_large_batch_is_cut_into_blocks_of_block_events_in_order() {
    let count = 2 * super::BLOCK_EVENTS + 3;
    let events = Event::batch((0..count).map(|i| data(&format!("c{i}"), &format!("t{i}"))));
    assert_eq!(events.len(), count);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.conversation.as_str(), format!("c{i}"));
        let first = &events[i - i % super::BLOCK_EVENTS];
        assert!(event.shares_block_with(first));
        let expected = if i < 2 * super::BLOCK_EVENTS {
            super::BLOCK_EVENTS
        } else {
            3
        };
        assert_eq!(event.block_len(), expected);
    }
    assert!(!events[super::BLOCK_EVENTS].shares_block_with(&events[0]));
}

#[test]
fn a_batch_lives_until_its_last_event_and_is_freed_with_it() {
    let mut batch = Event::batch((0..4).map(|i| data(&format!("c{i}"), &format!("t{i}"))));
    // A `Weak` to the block: it upgrades while any event of the batch lives.
    let block = std::sync::Arc::downgrade(&batch[0].block);
    let last = batch.pop().unwrap();
    let clone = batch[1].clone();
    drop(batch);
    assert_eq!(
        block.strong_count(),
        2,
        "the last event and a clone of another"
    );
    drop(clone);
    assert_eq!(block.strong_count(), 1);
    // Intact, its siblings gone.
    assert_eq!(last.text_content(), Some("t3"));
    assert_eq!(last.conversation.as_str(), "c3");
    drop(last);
    assert!(block.upgrade().is_none(), "the block outlived its events");
}
