//! The event mapping's unit tests.

use super::*;
use serde_json::json;

#[test]
fn events_with_an_empty_webhook_event_id_get_distinct_ids() {
    let event = |text: &str| {
        json!({"type": "message", "mode": "active", "timestamp": 1, "webhookEventId": "",
            "source": {"type": "user", "userId": "U1"}, "replyToken": "rt",
            "message": {"type": "text", "id": "m", "text": text}})
    };
    let body = json!({"destination": "Ubot", "events": [event("a"), event("b")]});
    let events = events_from_body(body.to_string().as_bytes()).unwrap();
    assert!(!events[0].id.as_str().is_empty());
    assert_ne!(
        events[0].id, events[1].id,
        "one dedup key would drop the second"
    );
}

#[test]
fn a_text_message_maps_with_every_core_field() {
    let events = events_from_body(
        json!({"destination": "Ubot", "events": [{
            "type": "message", "mode": "active", "timestamp": 1_700_000_000_000_i64,
            "source": {"type": "group", "groupId": "G1", "userId": "U1"},
            "webhookEventId": "01HX", "deliveryContext": {"isRedelivery": true},
            "replyToken": "rt-1",
            "message": {"type": "text", "id": "m1", "text": "@bot hi", "quotedMessageId": "m0",
                "mention": {"mentionees": [{"index": 0, "length": 4, "type": "user", "userId": "Ubot", "isSelf": true},
                                           {"index": 0, "length": 4, "type": "all"}]}}
        }]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let e = &events[0];
    assert_eq!(e.id.as_str(), "01HX");
    assert_eq!(e.platform, Platform::LINE);
    assert_eq!(e.conversation.as_str(), "G1");
    assert_eq!(e.sender.as_ref().map(UserId::as_str), Some("U1"));
    assert_eq!(e.reply_token.as_ref().map(ReplyToken::expose), Some("rt-1"));
    assert_eq!(e.occurred_at.as_millis(), 1_700_000_000_000);
    assert!(e.redelivered);
    let m = e.message().unwrap();
    assert_eq!(m.text.as_deref(), Some("@bot hi"));
    assert_eq!(m.reply_to.as_ref().map(MessageId::as_str), Some("m0"));
    assert_eq!(m.mentions.len(), 1, "@All has no user");
    assert_eq!(e.raw()["message"]["id"], "m1");
    let typed = e.line_event().unwrap().unwrap();
    assert!(matches!(
        typed.kind,
        model::EventKind::Message(MessageContent::Text(_))
    ));
}

#[test]
fn events_without_an_id_get_a_stable_fingerprint() {
    let first =
        json!({"type": "follow", "timestamp": 1, "source": {"type": "user", "userId": "U"}});
    let mut again = first.clone();
    again["deliveryContext"] = json!({"isRedelivery": true});
    let a = to_core_event("Ubot", first);
    let b = to_core_event("Ubot", again);
    assert_eq!(a.id, b.id);
    assert!(a.id.as_str().starts_with("sha256:"));
}

#[test]
fn a_message_of_an_odd_shape_is_an_unknown_message_not_an_unreadable_event() {
    for message in [
        json!({"type": 5, "id": "m1"}),
        json!({"type": "hologram", "id": 7}),
        json!("text"),
    ] {
        let e = to_core_event(
            "Ubot",
            json!({"type": "message", "timestamp": 1, "webhookEventId": "01M",
                   "source": {"type": "user", "userId": "U"}, "message": message}),
        );
        assert!(
            matches!(e.kind, EventKind::Message(_)),
            "{message}: {:?}",
            e.kind
        );
        let typed = e.line_event().unwrap().unwrap();
        assert!(matches!(
            typed.kind,
            model::EventKind::Message(MessageContent::Unknown { .. })
        ));
    }
}

#[test]
fn events_too_deep_for_a_tree_still_get_distinct_ids() {
    let deep = |leaf: &str| {
        format!(
            r#"{{"type":"things","timestamp":1,"source":{{"type":"user","userId":"U"}},"x":{}"{leaf}"{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        )
    };
    let body = format!(
        r#"{{"destination":"Ubot","events":[{},{}]}}"#,
        deep("a"),
        deep("b")
    );
    match events_from_body(body.as_bytes()) {
        // Read as JSON text, the events must not collapse into one id (and one dedup key).
        Ok(events) => {
            assert_eq!(events.len(), 2);
            assert_ne!(events[0].id, events[1].id);
            assert_eq!(events[0].raw.json(), deep("a"));
        }
        // Refused as a whole is as safe: nothing is acknowledged.
        Err(e) => assert!(e.to_string().contains("recursion"), "{e}"),
    }
}

#[test]
fn a_known_type_with_a_broken_payload_is_delivered_as_other() {
    let e = to_core_event(
        "Ubot",
        json!({"type": "postback", "timestamp": 3, "webhookEventId": "01P",
               "source": {"type": "room", "roomId": "R9", "userId": "U3"}, "postback": 42}),
    );
    assert_eq!(e.kind.name(), "postback");
    assert!(matches!(e.kind, EventKind::Other(_)));
    assert_eq!(e.conversation.as_str(), "R9");
    assert_eq!(e.id.as_str(), "01P");
    assert!(e.line_event().unwrap().is_err());
}

#[test]
fn bodies_that_are_not_webhooks_fail() {
    assert!(events_from_body(b"{not json").is_err());
    assert!(events_from_body(br#"{"destination": "U"}"#).is_err());
    assert!(events_from_body(br#"{"events": {}}"#).is_err());
    assert!(
        events_from_body(br#"{"destination": "U", "events": []}"#)
            .unwrap()
            .is_empty()
    );
}

/// Every event both ways: the one-pass path where it applies, the typed model always.
fn both_paths(event: &Value) -> (Option<(EventData, bool)>, (EventData, bool)) {
    let body = Bytes::from(event.to_string());
    let json = std::str::from_utf8(&body).unwrap();
    let fast = fast::event(&body, "Ubot", json);
    // Both with the event's raw payload, as `from_json` sets it after the general path.
    let mut general = general("Ubot", json);
    general.0.raw = Raw::from_shared(&body, json);
    (fast, general)
}

#[test]
fn the_one_pass_path_maps_text_events_as_the_typed_model_does() {
    let text = |source: Value, extra: Value| {
        let mut e = json!({"type": "message", "mode": "active", "timestamp": 1_700_000_000_000_i64,
            "source": source, "webhookEventId": "01HX", "replyToken": "rt-1",
            "deliveryContext": {"isRedelivery": false},
            "message": {"type": "text", "id": "m1", "text": "hi", "quoteToken": "q"}});
        for (k, v) in extra.as_object().unwrap() {
            if k == "message" {
                for (mk, mv) in v.as_object().unwrap() {
                    e["message"][mk] = mv.clone();
                }
            } else {
                e[k] = v.clone();
            }
        }
        e
    };
    let cases = [
        text(json!({"type": "user", "userId": "U1"}), json!({})),
        text(
            json!({"type": "group", "groupId": "G1", "userId": "U1"}),
            json!({}),
        ),
        text(json!({"type": "group", "groupId": "G1"}), json!({})),
        text(
            json!({"type": "room", "roomId": "R1", "userId": "U1"}),
            json!({}),
        ),
        text(json!({"type": "galaxy", "userId": "U1"}), json!({})),
        text(json!({"type": "galaxy"}), json!({})),
        text(json!(null), json!({})),
        text(
            json!({"type": "user", "userId": "U1"}),
            json!({"type": "messageEdited"}),
        ),
        text(
            json!({"type": "user", "userId": "U1"}),
            json!({"mode": "standby", "replyToken": null}),
        ),
        text(
            json!({"type": "user", "userId": "U1"}),
            json!({"webhookEventId": ""}),
        ),
        text(
            json!({"type": "user", "userId": "U1"}),
            json!({"webhookEventId": null}),
        ),
        text(
            json!({"type": "user", "userId": "U1"}),
            json!({"deliveryContext": {"isRedelivery": true}}),
        ),
        text(
            json!({"type": "group", "groupId": "G\"1\\u00e9", "userId": "U\\n1"}),
            json!({"webhookEventId": "01\"HX", "replyToken": "r\\t1",
                   "message": {"id": "m\"1", "text": "say \"hi\"\n\u{e9}\\", "quotedMessageId": "m\"0"}}),
        ),
        text(
            json!({"type": "user", "userId": "U1"}),
            json!({"message": {"quotedMessageId": "m0", "emojis": [{"index": 0, "length": 6, "productId": "p", "emojiId": "e"}],
                   "mention": {"mentionees": [
                       {"index": 0, "length": 4, "type": "user", "userId": "Ubot", "isSelf": true},
                       {"index": 5, "length": 4, "type": "all"},
                       {"index": 9, "length": 2, "userId": "U\"2"}]}}}),
        ),
    ];
    for case in &cases {
        let (fast, general) = both_paths(case);
        let fast = fast.unwrap_or_else(|| panic!("the one-pass path refused {case}"));
        assert!(
            matches!(fast.0.kind, EventKind::Message(_) | EventKind::Edited(_)),
            "{case}"
        );
        assert_eq!(fast, general, "{case}");
    }
    // The escapes come out as the text they stand for.
    let (fast, _) = both_paths(&cases[12]);
    let e = fast.unwrap().0;
    assert_eq!(e.id.as_str(), "01\"HX");
    assert_eq!(e.conversation.as_str(), "G\"1\\u00e9");
    assert_eq!(e.text_content(), Some("say \"hi\"\n\u{e9}\\"));
    assert_eq!(
        e.reply_token.as_ref().map(ReplyToken::expose),
        Some("r\\t1")
    );
}

#[test]
fn the_one_pass_path_leaves_what_it_does_not_read_as_the_model_does_to_the_model() {
    let base = json!({"type": "message", "timestamp": 1, "webhookEventId": "01HX",
        "source": {"type": "user", "userId": "U1"},
        "message": {"type": "text", "id": "m1", "text": "hi"}});
    let with = |pointer: &str, value: Value| {
        let mut e = base.clone();
        *e.pointer_mut(pointer).unwrap() = value;
        e
    };
    let refused = [
        with("/message/id", json!(null)),
        with("/message/text", json!(5)),
        with("/message", json!(["text", "m1", "hi"])),
        with("/message", json!(null)),
        with("/message", json!("hi")),
        with("/message", json!({"type": "text", "id": "m1"})),
        with("/message/type", json!("image")),
        with("/source", json!({"type": "group", "userId": "U1"})),
        with("/source", json!({"type": "user"})),
        with("/timestamp", json!(null)),
        with("/type", json!("postback")),
        with(
            "/message",
            json!({"type": "text", "id": "m1", "text": "hi", "mention": {"mentionees": [{"index": 0, "length": 1, "type": null}]}}),
        ),
        with(
            "/message",
            json!({"type": "text", "id": "m1", "text": "hi", "emojis": [{"index": 0}]}),
        ),
    ];
    for case in &refused {
        let (fast, general) = both_paths(case);
        assert!(fast.is_none(), "{case}");
        // What the model decides stays the answer: unknown messages, others, ...
        let _ = general;
    }
    let duplicate = r#"{"type":"message","timestamp":1,"type":"message","source":{"type":"user","userId":"U1"},"message":{"type":"text","id":"m","text":"a"}}"#;
    let body = Bytes::from(duplicate);
    assert!(fast::event(&body, "Ubot", duplicate).is_none());
    assert!(matches!(
        general("Ubot", duplicate).0.kind,
        EventKind::Other(_)
    ));
    // The message is read in the event's pass now: a key repeated inside it is refused there too.
    let repeated = r#"{"type":"message","timestamp":1,"source":{"type":"user","userId":"U1"},"message":{"type":"text","id":"m","text":"a","text":"b"}}"#;
    let body = Bytes::from(repeated);
    assert!(fast::event(&body, "Ubot", repeated).is_none());
    // Another type's payload given twice (read, not kept): refused as the model refuses it.
    let twice = r#"{"type":"message","timestamp":1,"postback":{},"source":{"type":"user","userId":"U1"},"message":{"type":"text","id":"m","text":"a"},"postback":{}}"#;
    let body = Bytes::from(twice);
    assert!(fast::event(&body, "Ubot", twice).is_none());
    assert!(matches!(general("Ubot", twice).0.kind, EventKind::Other(_)));
    // Given once it is checked and let be, as the model lets it be.
    let once = r#"{"type":"message","timestamp":1,"postback":{"data":"x"},"source":{"type":"user","userId":"U1"},"message":{"type":"text","id":"m","text":"a"}}"#;
    let body = Bytes::from(once);
    assert!(fast::event(&body, "Ubot", once).is_some());
}

#[test]
fn events_share_the_body_they_came_in() {
    let body = Bytes::from(
        json!({"destination": "Ubot", "events": [
            {"type": "message", "timestamp": 1, "webhookEventId": "01HX",
             "source": {"type": "user", "userId": "U1"},
             "message": {"type": "text", "id": "m1", "text": "hi"}},
            {"type": "follow", "timestamp": 2, "webhookEventId": "01HY",
             "source": {"type": "user", "userId": "U1"}}]})
        .to_string(),
    );
    let events = events_from_bytes(&body).unwrap();
    let within = |s: &str| {
        let (start, at) = (body.as_ptr() as usize, s.as_ptr() as usize);
        at >= start && at + s.len() <= start + body.len()
    };
    for e in &events {
        assert!(
            within(e.raw.json()),
            "the payload is a slice of the body, not a copy"
        );
    }
    assert_eq!(events[1].raw()["type"], "follow");
}

/// A body's events and how many were in standby mode.
type Parsed = (Vec<EventData>, usize);

/// A body both ways: read in one pass, and split into raw values then read event by event.
fn body_both_ways(body: &str) -> (Option<Parsed>, Result<Parsed, String>) {
    body_both_ways_keeping(body, false)
}

fn body_both_ways_keeping(
    body: &str,
    keep_standby: bool,
) -> (Option<Parsed>, Result<Parsed, String>) {
    let body = Bytes::copy_from_slice(body.as_bytes());
    // The events moved out of the thread's buffer, to be compared as plain vectors.
    let plain =
        |(mut events, standby): (EventBuffer, usize)| (std::mem::take(&mut *events), standby);
    let one = one_pass(&body, keep_standby).map(plain);
    let two = two_passes(&body, keep_standby)
        .map(plain)
        .map_err(|e| e.to_string());
    (one, two)
}

#[test]
fn the_one_pass_body_reads_every_event_as_the_two_passes_do() {
    let text = |id: &str, user: &str, words: &str| {
        json!({"type": "message", "mode": "active", "timestamp": 1_700_000_000_000_i64,
            "source": {"type": "user", "userId": user}, "webhookEventId": id, "replyToken": "rt",
            "deliveryContext": {"isRedelivery": false},
            "message": {"type": "text", "id": "m1", "text": words}})
    };
    let mixed = json!([
        text("01A", "U1", "hi"),
        {"type": "follow", "timestamp": 2, "webhookEventId": "01B",
         "source": {"type": "user", "userId": "U1"}, "follow": {"isUnblocked": false}},
        {"type": "message", "timestamp": 3, "webhookEventId": "01C",
         "source": {"type": "group", "groupId": "G1", "userId": "U2"},
         "message": {"type": "image", "id": "m2", "contentProvider": {"type": "line"}}},
        text("01D", "U3", "say \"hi\"\n\u{e9}"),
        {"type": "beacon", "timestamp": 4, "webhookEventId": "01E"},
        {"type": "message", "timestamp": 5, "webhookEventId": "01F", "mode": "standby",
         "source": {"type": "user", "userId": "U1"},
         "message": {"type": "text", "id": "m3", "text": "standby"}},
        {"type": "message", "timestamp": 6, "webhookEventId": "01G",
         "source": {"type": "user", "userId": "U1"}, "message": {"type": "text", "id": "m4"}},
        17,
        "not an event",
        null,
        [1, 2],
        {"type": "postback", "timestamp": 7, "webhookEventId": "01H",
         "source": {"type": "user", "userId": "U1"},
         "postback": {"data": "a=1", "params": {"date": "2026-12-06"}}},
        {"type": "message", "timestamp": 8, "source": {"type": "user", "userId": "U1"},
         "message": {"type": "text", "id": "m5", "text": "no id"}},
        // Standby down the general path (the text above is standby down the fast one).
        {"type": "follow", "mode": "standby", "timestamp": 9, "webhookEventId": "01J",
         "source": {"type": "user", "userId": "U4"}, "follow": {"isUnblocked": false}},
    ]);
    let events = mixed.to_string();
    let bodies = [
        format!(r#"{{"destination":"Ubot","events":{events}}}"#),
        // Whitespace everywhere JSON allows it, keys in another order, keys the body ignores.
        format!(
            " \n{{ \"extra\" : {{\"a\": [1, {{}}]}} ,\t\"destination\" :\"Ubot\" ,\r\n \"events\" : {} , \"n\": 12.5e3 , \"t\": true }} \n",
            serde_json::to_string_pretty(&mixed).unwrap()
        ),
        // No destination: the events' chats fall back to an empty bot id, as in the model.
        format!(r#"{{"events":{events}}}"#),
        format!(r#"{{"events":{events},"other":null}}"#),
        r#"{"destination":"Ubot","events":[]}"#.to_owned(),
        r#"{"destination":"Ubot","events":[ ]}"#.to_owned(),
    ];
    for (body, keep_standby) in bodies.iter().flat_map(|b| [(b, false), (b, true)]) {
        let (one, two) = body_both_ways_keeping(body, keep_standby);
        let one = one.unwrap_or_else(|| panic!("the one pass refused {body}"));
        let two = two.unwrap();
        assert_eq!(one, two, "{body}");
        for (a, b) in one.0.iter().zip(&two.0) {
            assert_eq!(a.raw.json(), b.raw.json(), "the same span of {body}");
        }
    }
    let (kept, _) = body_both_ways_keeping(&bodies[0], true);
    let (kept, none_left_out) = kept.unwrap();
    assert_eq!((kept.len(), none_left_out), (14, 0));
    assert_eq!(
        kept[5].id.as_str(),
        "01F",
        "a standby text, kept in its place"
    );
    assert_eq!(kept[13].id.as_str(), "01J", "a standby follow, kept");
    let (one, _) = body_both_ways(&bodies[0]);
    let (events, standby) = one.unwrap();
    assert_eq!((events.len(), standby), (12, 2));
    assert_eq!(events[0].raw.json(), text("01A", "U1", "hi").to_string());
    assert!(matches!(events[1].kind, EventKind::Followed));
    assert_eq!(events[3].text_content(), Some("say \"hi\"\n\u{e9}"));
}

#[test]
fn the_one_pass_body_leaves_odd_bodies_to_the_two_passes() {
    let event = r#"{"type":"message","timestamp":1,"webhookEventId":"01A","source":{"type":"user","userId":"U1"},"message":{"type":"text","id":"m","text":"a"}}"#;
    // Well-formed but not plain: the two passes read them (and agree with serde on each).
    let odd = [
        format!(r#"{{"events":[{event}],"destination":"Ubot"}}"#),
        format!(r#"{{"destination":"U1","destination":"U2","events":[{event}]}}"#),
        format!(r#"{{"destination":"Ubot","events":[{event}],"events":[]}}"#),
        format!(r#"{{"destin\u0061tion":"Ubot","events":[{event}]}}"#),
        format!(r#"{{"destination":"Ubot","ev\u0065nts":[{event}]}}"#),
    ];
    for body in &odd {
        let (one, two) = body_both_ways(body);
        assert!(one.is_none(), "{body}");
        // serde refuses a repeated field; the others read.
        let repeated = body.matches(r#""destination":"#).count() > 1
            || body.matches(r#""events":"#).count() > 1;
        assert_eq!(two.is_err(), repeated, "{body}");
    }
    // Escaped keys and a destination after the events still read, through the two passes.
    let (_, two) = body_both_ways(&odd[0]);
    assert_eq!(two.unwrap().0[0].conversation.as_str(), "U1");
    let (_, two) = body_both_ways(&odd[4]);
    assert_eq!(two.unwrap().0.len(), 1);
    // Not webhooks: refused by the one pass, and with serde's error by the two passes.
    let broken = [
        String::new(),
        "   ".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        r#"{"destination":"Ubot"}"#.to_owned(),
        r#"{"destination":null,"events":[]}"#.to_owned(),
        r#"{"events":{}}"#.to_owned(),
        r#"{"events":null}"#.to_owned(),
        format!(r#"{{"events":[{event},]}}"#),
        format!(r#"{{"events":[{event}]"#),
        format!(r#"{{"events":[{event}]}} x"#),
        format!(r#"{{"events":[{event}]}}{{}}"#),
        format!(r#"{{"events":[{event} {event}]}}"#),
        format!(r#"{{"events":[{event}],}}"#),
        format!(r#"{{"events":[{}]}}"#, &event[..event.len() - 1]),
    ];
    for body in &broken {
        let (one, two) = body_both_ways(body);
        assert!(one.is_none(), "{body}");
        assert!(two.is_err(), "{body}");
        assert!(events_from_body(body.as_bytes()).is_err(), "{body}");
    }
    // Not UTF-8.
    let mut bytes = format!(r#"{{"events":[{event}]}}"#).into_bytes();
    let at = bytes.len() - 10;
    bytes[at] = 0xff;
    assert!(one_pass(&Bytes::from(bytes.clone()), true).is_none());
    assert!(events_from_body(&bytes).is_err());
}

#[test]
fn the_events_of_one_body_share_one_block_on_both_paths() {
    let text = |id: &str| {
        json!({"type": "message", "timestamp": 1, "webhookEventId": id, "replyToken": "rt",
            "source": {"type": "user", "userId": "U1"},
            "message": {"type": "text", "id": "m1", "text": "hi"}})
    };
    // A text event (the fast path), a follow (the typed model) and one the model cannot read.
    let events = json!([text("01A"), {"type": "follow", "timestamp": 2, "webhookEventId": "01B",
        "source": {"type": "user", "userId": "U2"}}, {"type": 7}, text("01C")]);
    let one_pass_body = json!({"destination": "Ubot", "events": events}).to_string();
    // `destination` after `events`: the one pass leaves it to the two passes.
    let two_pass_body = format!(r#"{{"events": {events}, "destination": "Ubot"}}"#);
    assert!(one_pass(&Bytes::from(one_pass_body.clone()), true).is_some());
    assert!(one_pass(&Bytes::from(two_pass_body.clone()), true).is_none());
    let channel = ChannelId::new("1234567890");
    for body in [&one_pass_body, &two_pass_body] {
        for through in [None, Some(&channel)] {
            let (events, _) = parse_body(&Bytes::from(body.clone()), true, through).unwrap();
            assert_eq!(events.len(), 4);
            let ids: Vec<_> = events.iter().map(|e| e.id.as_str().to_owned()).collect();
            assert_eq!(ids[..2], ["01A", "01B"]);
            assert_eq!(ids[3], "01C");
            assert!(
                events.iter().all(|e| e.shares_block_with(&events[0])),
                "the body's events are in several blocks"
            );
            // The channel set in the data before the block was made, not copied out of it.
            assert!(events.iter().all(|e| e.channel.as_ref() == through));
            // Each its own data: a sibling is not a clone.
            assert!(!events[0].ptr_eq(&events[3]));
        }
    }
    let body = one_pass_body;
    // Another body's events are in another block.
    let other = events_from_body(body.as_bytes()).unwrap();
    let again = events_from_body(body.as_bytes()).unwrap();
    assert!(!other[0].shares_block_with(&again[0]));
}
