//! The event mapping's unit tests.

use super::*;

fn body(items: Value) -> Vec<u8> {
    json!({"object": "page", "entry": [{"id": "PAGE", "time": 5, "messaging": items}]})
        .to_string()
        .into_bytes()
}

#[test]
fn a_text_message_maps_with_every_core_field() {
    let batch = parse_body(&body(json!([{
        "sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "timestamp": 1_700_000_000_000_i64,
        "message": {"mid": "m_1", "text": "hi", "reply_to": {"mid": "m_0"}}
    }])))
    .unwrap();
    let e = &batch.events[0];
    assert_eq!(e.id.as_str(), "m_1");
    assert_eq!(e.platform, Platform::MESSENGER);
    assert_eq!(e.conversation.as_str(), "PSID1");
    assert_eq!(e.sender.as_ref().map(UserId::as_str), Some("PSID1"));
    assert_eq!(e.occurred_at.as_millis(), 1_700_000_000_000);
    let m = e.message().unwrap();
    assert_eq!(m.text.as_deref(), Some("hi"));
    assert_eq!(m.reply_to.as_ref().map(MessageId::as_str), Some("m_0"));
    assert_eq!(e.raw()["message"]["mid"], "m_1");
    assert!(matches!(
        e.messenger_event().unwrap().unwrap().kind,
        MessagingKind::Message(_)
    ));
    assert!(!e.is_messenger_standby());
}

#[test]
fn echoes_are_marked_and_never_messages() {
    let items = json!([
        {"sender": {"id": "PAGE"}, "recipient": {"id": "PSID1"}, "timestamp": 1,
         "message": {"mid": "m_e", "text": "from the page", "is_echo": true, "app_id": 123}},
        {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "timestamp": 2,
         "message": {"mid": "m_u", "text": "from the user"}}
    ]);
    let batch = parse_body(&body(items)).unwrap();
    assert_eq!(batch.events.len(), 2);
    assert!(batch.events[0].is_messenger_echo());
    assert!(!batch.events[1].is_messenger_echo());
    assert_eq!(batch.events[1].id.as_str(), "m_u");
    let echo = &batch.events[0];
    assert_eq!(echo.kind.name(), ECHO_KIND);
    assert_eq!(echo.conversation.as_str(), "PSID1");
    assert_eq!(echo.sender.as_ref().map(UserId::as_str), Some("PAGE"));
}

#[test]
fn items_without_an_id_get_a_stable_fingerprint() {
    let read = json!({"sender": {"id": "P"}, "recipient": {"id": "PAGE"}, "timestamp": 9,
                      "read": {"watermark": 8}});
    let a = parse_body(&body(json!([read.clone()]))).unwrap();
    let b = parse_body(&body(json!([read]))).unwrap();
    assert_eq!(a.events[0].id, b.events[0].id);
    assert!(a.events[0].id.as_str().starts_with("sha256:"));
    assert_eq!(a.events[0].kind.name(), "read");
}

#[test]
fn a_known_key_with_a_broken_payload_is_delivered_as_other() {
    let batch = parse_body(&body(
        json!([{"sender": {"id": "P9"}, "timestamp": 3, "postback": 42}]),
    ))
    .unwrap();
    let e = &batch.events[0];
    assert!(matches!(&e.kind, EventKind::Other(o) if o.name == "postback"));
    assert_eq!(e.conversation.as_str(), "P9");
    assert!(e.messenger_event().unwrap().is_err());
}

#[test]
fn an_unreadable_echo_is_still_an_echo() {
    let batch = parse_body(&body(json!([
        {"sender": {"id": "PAGE"}, "recipient": {"id": "PSID1"}, "timestamp": 3,
         "message": {"mid": "m_e", "is_echo": true, "text": 42}},
        {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "timestamp": 4,
         "message": {"mid": "m_u", "text": 42}}
    ])))
    .unwrap();
    let (echo, odd) = (&batch.events[0], &batch.events[1]);
    assert!(echo.messenger_event().unwrap().is_err(), "unreadable");
    assert!(echo.is_messenger_echo());
    assert_eq!(echo.conversation.as_str(), "PSID1");
    assert_eq!(echo.sender.as_ref().map(UserId::as_str), Some("PAGE"));
    assert!(!odd.is_messenger_echo());
    assert_eq!(odd.kind.name(), "message");
    assert_eq!(odd.conversation.as_str(), "PSID1");
}

#[test]
fn bodies_that_are_not_webhooks_fail_and_other_objects_yield_nothing() {
    assert!(parse_body(b"{not json").is_err());
    assert!(parse_body(br#"{"object": "page"}"#).is_err());
    assert!(parse_body(br#"{"entry": []}"#).is_err());
    assert!(parse_body(br#"{"object": "page", "entry": {}}"#).is_err());
    let other = parse_body(
        br#"{"object": "user", "entry": [{"id": "1", "time": 1, "messaging": [{"message": {"mid": "m"}}]}]}"#,
    )
    .unwrap();
    assert_eq!(other.object, Object::Unknown("user".into()));
    assert!(other.events.is_empty());
}

/// An item both ways: the one-pass path where it applies, the typed model always.
fn both_paths(item: &Value) -> (Option<EventData>, EventData) {
    let body = Bytes::from(item.to_string());
    let json = std::str::from_utf8(&body).unwrap();
    let fast = fast::event(&body, json, "PAGE", 5);
    let context = Context {
        page_id: "PAGE",
        time: 5,
        standby: false,
    };
    (
        fast,
        to_core_event(&serde_json::from_str(json).unwrap(), &context),
    )
}

#[test]
fn the_one_pass_path_maps_text_items_as_the_typed_model_does() {
    let long_mid = format!("m_{}", "A".repeat(90));
    let cases = [
        json!({"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "timestamp": 1,
               "message": {"mid": "m_1", "text": "hi"}}),
        json!({"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"},
               "message": {"mid": long_mid, "text": "hi", "reply_to": {"mid": "m_0"}}}),
        json!({"sender": {"user_ref": "ref\"1"}, "recipient": {"id": "PAGE"}, "timestamp": 2,
               "message": {"mid": "m_\"2", "text": "say \"hi\"\n\u{e9}\\", "reply_to": {"mid": ""}}}),
        json!({"sender": null, "recipient": {"id": "PAGE"}, "timestamp": 2.5,
               "message": {"mid": "m_3", "attachments": [], "quick_reply": null, "is_unsupported": true}}),
        json!({"recipient": {}, "timestamp": "7", "message": {"mid": "m_4", "text": "x", "metadata": "m"}}),
        json!({"sender": {"id": null, "user_ref": "r2"}, "recipient": null,
               "message": {"mid": "m_5", "text": "x"}}),
    ];
    for case in &cases {
        let (fast, general) = both_paths(case);
        let fast = fast.unwrap_or_else(|| panic!("the one-pass path refused {case}"));
        assert!(matches!(fast.kind, EventKind::Message(_)), "{case}");
        assert_eq!(fast, general, "{case}");
    }
    let (fast, _) = both_paths(&cases[2]);
    let e = fast.unwrap();
    assert_eq!(e.id.as_str(), "m_\"2");
    assert_eq!(e.conversation.as_str(), "user_ref:ref\"1");
    assert_eq!(e.text_content(), Some("say \"hi\"\n\u{e9}\\"));
}

#[test]
fn the_one_pass_path_leaves_what_it_does_not_read_to_the_model() {
    let refused = [
        json!({"sender": {"id": 123}, "message": {"mid": "m_1", "text": "hi"}}),
        json!({"sender": ["x"], "message": {"mid": "m_1", "text": "hi"}}),
        json!({"sender": {"id": "P"}, "message": {"mid": "", "text": "hi"}}),
        json!({"sender": {"id": "P"}, "message": {"mid": "m_1", "text": "hi", "is_echo": true}}),
        json!({"sender": {"id": "P"}, "message": {"mid": "m_1", "is_deleted": true}}),
        json!({"sender": {"id": "P"}, "message": {"mid": "m_1", "text": "hi", "quick_reply": {"payload": "x"}}}),
        json!({"sender": {"id": "P"}, "message": {"mid": "m_1", "attachments": null}}),
        json!({"sender": {"id": "P"}, "message": {"mid": "m_1", "attachments": [{"type": "image"}]}}),
        json!({"sender": {"id": "P"}, "message": ["m_1", "hi"]}),
        json!({"sender": {"id": "P"}, "message": {"mid": null, "text": "hi"}}),
        json!({"sender": {"id": "P"}, "postback": {"payload": "x"}}),
        // Parties and the message are read from objects only, ids from strings only.
        json!({"sender": "P", "message": {"mid": "m_1", "text": "hi"}}),
        json!({"recipient": ["PAGE"], "message": {"mid": "m_1", "text": "hi"}}),
        json!({"sender": {"id": 1.5}, "message": {"mid": "m_1", "text": "hi"}}),
        json!({"sender": {"id": "P"}, "message": null}),
        json!({"sender": {"id": "P"}, "message": "hi"}),
    ];
    for case in &refused {
        assert!(both_paths(case).0.is_none(), "{case}");
    }
}

#[test]
fn events_share_the_body_they_came_in() {
    let long_mid = format!("m_{}", "A".repeat(90));
    let body = Bytes::from(body(json!([
        {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "timestamp": 1,
         "message": {"mid": long_mid, "text": "hi"}},
        {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "read": {"watermark": 1}}
    ])));
    let batch = parse_bytes(&body).unwrap();
    let within = |s: &str| {
        let (start, at) = (body.as_ptr() as usize, s.as_ptr() as usize);
        at >= start && at + s.len() <= start + body.len()
    };
    assert!(
        within(batch.events[0].id.as_str()),
        "a long id shares the body"
    );
    for e in &batch.events {
        assert!(
            within(e.raw.json()),
            "the payload is a slice of the body, not a copy"
        );
    }
}

/// A body both ways: read in one pass, and split into raw values then read item by item.
fn body_both_ways(body: &str) -> (Option<Batch>, Result<Batch, String>) {
    let body = Bytes::copy_from_slice(body.as_bytes());
    let batch = |(object, events): (Object, EventBuffer)| Batch {
        object,
        events: events.into_events(),
    };
    (
        one_pass(&body).map(batch),
        two_passes(&body).map(batch).map_err(|e| e.to_string()),
    )
}

#[test]
fn the_one_pass_body_reads_every_item_as_the_two_passes_do() {
    let text = |mid: &str, psid: &str, words: &str| {
        json!({"sender": {"id": psid}, "recipient": {"id": "PAGE"}, "timestamp": 1,
               "message": {"mid": mid, "text": words}})
    };
    let messaging = json!([
        text("m_1", "P1", "hi"),
        {"sender": {"id": "P1"}, "recipient": {"id": "PAGE"}, "timestamp": 2,
         "postback": {"title": "t", "payload": "x"}},
        {"sender": {"id": "P2"}, "recipient": {"id": "PAGE"}, "timestamp": 3,
         "message": {"mid": "m_2", "attachments": [{"type": "image", "payload": {"url": "https://x"}}]}},
        text("m_\"3", "P3", "say \"hi\"\n\u{e9}"),
        {"sender": {"id": "PAGE"}, "recipient": {"id": "P1"}, "timestamp": 4,
         "message": {"mid": "m_4", "text": "echo", "is_echo": true, "app_id": 1}},
        {"sender": {"id": 123}, "message": {"mid": "m_5", "text": "number id"}},
        17,
        null,
        "not an item",
        [1, 2],
        {"message": {"mid": "m_6", "text": "no parties"}},
    ]);
    let standby = json!([text("m_7", "P4", "standby"), {"weird": true}]);
    let changes = json!([{"field": "feed", "value": {"from": {"id": "U1"}, "item": "comment"}}, 5]);
    let (m, s, c) = (
        messaging.to_string(),
        standby.to_string(),
        changes.to_string(),
    );
    let bodies = [
        format!(r#"{{"object":"page","entry":[{{"id":"PAGE","time":5,"messaging":{m}}}]}}"#),
        // Lists in another order (the events keep messaging, standby, changes), several
        // entries, whitespace everywhere JSON allows it, keys the body ignores.
        format!(
            " {{ \"object\" : \"instagram\" , \"x\": [1, {{\"a\": null}}], \"entry\" : [ {{ \"id\" : 42 , \"time\":7, \"changes\" : {c} , \"standby\": {s}, \"messaging\" : {} , \"y\": 1.5 }} , {{\"id\": \"PAGE2\", \"messaging\": {m}}}, {{}} ] }}\n",
            serde_json::to_string_pretty(&messaging).unwrap()
        ),
        format!(r#"{{"object":"page","entry":[{{"messaging":{m}}}]}}"#),
        format!(
            r#"{{"object":"page","entry":[{{"id":null,"time":0,"messaging":[],"standby":{s}}}]}}"#
        ),
        r#"{"object":"page","entry":[]}"#.to_owned(),
    ];
    for body in &bodies {
        let (one, two) = body_both_ways(body);
        let one = one.unwrap_or_else(|| panic!("the one pass refused {body}"));
        let two = two.unwrap();
        assert_eq!(one, two, "{body}");
        for (a, b) in one.events.iter().zip(&two.events) {
            assert_eq!(a.raw.json(), b.raw.json(), "the same span of {body}");
        }
    }
    let (one, _) = body_both_ways(&bodies[0]);
    let events = one.unwrap().events;
    assert_eq!(events.len(), 11);
    assert_eq!(events[0].raw.json(), text("m_1", "P1", "hi").to_string());
    assert_eq!(events[3].text_content(), Some("say \"hi\"\n\u{e9}"));
    assert!(
        events
            .iter()
            .all(|e| e.channel.as_ref().map(|c| c.as_str()) == Some("PAGE"))
    );
    let (one, _) = body_both_ways(&bodies[1]);
    let events = one.unwrap().events;
    assert_eq!(events.len(), 11 + 2 + 2 + 11);
    assert!(
        matches!(&events[13].kind, EventKind::Other(o) if o.name == "changes_feed"),
        "{:?}",
        events[13].kind
    );
}

#[test]
fn the_one_pass_body_leaves_odd_bodies_to_the_two_passes() {
    let item = r#"{"sender":{"id":"P1"},"recipient":{"id":"PAGE"},"timestamp":1,"message":{"mid":"m_1","text":"hi"}}"#;
    // Well-formed but not plain, or not a page's: the two passes read them.
    let odd = [
        format!(r#"{{"entry":[{{"id":"PAGE","messaging":[{item}]}}],"object":"page"}}"#),
        r#"{"object":"page","object":"page","entry":[]}"#.to_owned(),
        r#"{"object":"page","entry":[],"entry":[]}"#.to_owned(),
        format!(r#"{{"object":"page","entry":[{{"messaging":[{item}],"id":"PAGE"}}]}}"#),
        format!(r#"{{"object":"page","entry":[{{"messaging":[{item}],"time":3}}]}}"#),
        format!(r#"{{"object":"page","entry":[{{"id":"A","id":"B","messaging":[{item}]}}]}}"#),
        format!(r#"{{"object":"page","entry":[{{"messaging":[{item}],"messaging":[]}}]}}"#),
        format!(r#"{{"obj\u0065ct":"page","entry":[{{"messaging":[{item}]}}]}}"#),
        format!(r#"{{"object":"user","entry":[{{"messaging":[{item}]}}]}}"#),
        format!(r#"{{"object":"page","entry":[["PAGE", 1, [{item}]]]}}"#),
    ];
    for body in &odd {
        let (one, _) = body_both_ways(body);
        assert!(one.is_none(), "{body}");
    }
    let (_, two) = body_both_ways(&odd[0]);
    assert_eq!(two.unwrap().events.len(), 1);
    let (_, two) = body_both_ways(&odd[3]);
    let events = two.unwrap().events;
    assert_eq!(events[0].channel.as_ref().map(|c| c.as_str()), Some("PAGE"));
    // Not webhooks: refused by the one pass, and with serde's error by the two passes.
    let broken = [
        String::new(),
        "[]".to_owned(),
        "{}".to_owned(),
        r#"{"object":"page"}"#.to_owned(),
        r#"{"object":"page","entry":{}}"#.to_owned(),
        r#"{"object":"page","entry":[{"time":null}]}"#.to_owned(),
        r#"{"object":"page","entry":[{"time":1.5}]}"#.to_owned(),
        r#"{"object":"page","entry":[{"messaging":null}]}"#.to_owned(),
        format!(r#"{{"object":"page","entry":[{{"messaging":[{item},]}}]}}"#),
        format!(r#"{{"object":"page","entry":[{{"messaging":[{item} {item}]}}]}}"#),
        format!(r#"{{"object":"page","entry":[{{"messaging":[{item}]}}]}} x"#),
        format!(r#"{{"object":"page","entry":[{{"messaging":[{item}]}}],}}"#),
        format!(
            r#"{{"object":"page","entry":[{{"messaging":[{}]}}]}}"#,
            &item[..item.len() - 1]
        ),
    ];
    for body in &broken {
        let (one, two) = body_both_ways(body);
        assert!(one.is_none(), "{body}");
        assert!(two.is_err(), "{body}");
        assert!(parse_body(body.as_bytes()).is_err(), "{body}");
    }
}

#[test]
fn the_events_of_one_body_share_one_block_on_both_paths() {
    let text = |mid: &str| {
        format!(
            r#"{{"sender": {{"id": "U1"}}, "recipient": {{"id": "PAGE"}}, "timestamp": 1, "message": {{"mid": "{mid}", "text": "hi"}}}}"#
        )
    };
    // Two entries: texts (the fast path), a postback (the typed model), a standby item and a
    // change. Written out, not with `json!`: its keys come sorted, the lists before the ids,
    // which the one pass leaves to the two passes.
    let postback = r#"{"sender": {"id": "U2"}, "recipient": {"id": "PAGE"}, "timestamp": 2, "postback": {"title": "t", "payload": "p"}}"#;
    let body = format!(
        r#"{{"object": "page", "entry": [
        {{"id": "PAGE", "time": 1, "messaging": [{}, {postback}], "standby": [{}]}},
        {{"id": "PAGE2", "time": 2, "messaging": [{}],
          "changes": [{{"field": "feed", "value": {{"from": {{"id": "U3"}}}}}}]}}]}}"#,
        text("m1"),
        text("m2"),
        text("m3")
    );
    let (one, two) = body_both_ways(&body);
    for batch in [one.expect("one pass"), two.expect("two passes")] {
        let events = batch.events;
        assert_eq!(events.len(), 5);
        assert_eq!(events[0].id.as_str(), "m1");
        assert_eq!(events[3].id.as_str(), "m3");
        assert!(
            events.iter().all(|e| e.shares_block_with(&events[0])),
            "the body's events are in several blocks"
        );
        assert!(!events[0].ptr_eq(&events[3]));
        assert_eq!(
            events[3].channel.as_ref().map(|c| c.as_str()),
            Some("PAGE2")
        );
    }
}

#[test]
fn echoes_and_standby_items_are_left_out_before_the_others_share_a_block() {
    let raw = format!(
        r#"{{"object":"page","entry":[{{"id":"PAGE","time":1,"messaging":[{m1},{echo},{m2}],"standby":[{m3}]}}]}}"#,
        m1 = r#"{"sender":{"id":"U1"},"recipient":{"id":"PAGE"},"timestamp":1,"message":{"mid":"m_1","text":"a"}}"#,
        echo = r#"{"sender":{"id":"PAGE"},"recipient":{"id":"U1"},"timestamp":2,"message":{"mid":"m_e","text":"b","is_echo":true}}"#,
        m2 = r#"{"sender":{"id":"U2"},"recipient":{"id":"PAGE"},"timestamp":3,"message":{"mid":"m_2","text":"c"}}"#,
        m3 = r#"{"sender":{"id":"U3"},"recipient":{"id":"PAGE"},"timestamp":4,"message":{"mid":"m_3","text":"d"}}"#,
    );
    let body = Bytes::from(raw);
    let all = parse_bytes(&body).unwrap();
    assert_eq!(all.events.len(), 4);
    let leave = Leave {
        echoes: true,
        standby: true,
    };
    let (kept, left) = parse_leaving_out(&body, leave).unwrap();
    assert_eq!(
        left,
        LeftOut {
            echoes: 1,
            standby: 1
        }
    );
    let ids: Vec<&str> = kept.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["m_1", "m_2"]);
    assert!(kept.events[0].shares_block_with(&kept.events[1]));
    // Side by side in the block: the echo between them was never in it.
    let at = |e: &Event| std::ptr::from_ref(e.data()) as usize;
    assert_eq!(
        at(&kept.events[1]) - at(&kept.events[0]),
        std::mem::size_of::<EventData>()
    );
    let (echoes_kept, left) = parse_leaving_out(
        &body,
        Leave {
            echoes: false,
            standby: true,
        },
    )
    .unwrap();
    assert_eq!(left.echoes, 0);
    assert!(echoes_kept.events[1].is_messenger_echo());
    assert_eq!(echoes_kept.events.len(), 3);
}
