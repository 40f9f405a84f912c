use serde_json::json;

use super::*;

fn value(mid: &str, ts: i64) -> Value {
    json!({"sender": {"id": "1"}, "recipient": {"id": "2"}, "timestamp": ts, "message": {"mid": mid, "text": "a\nb"}})
}

fn ev(mid: &str, ts: i64) -> MessagingEvent {
    value(mid, ts).into()
}

#[test]
fn rendered_files_parse_back_in_line_format() {
    let events = vec![ev("m1", 1), ev("m2", 2)];
    let bytes = render(&events);
    let parsed = parse(&bytes);
    assert_eq!(parsed.events, events);
    assert!(parsed.line_format);

    let mut appended = bytes[..bytes.len() - TAIL.len()].to_vec();
    appended.extend(render_append(&[ev("m3", 3)]));
    let parsed = parse(&appended);
    assert_eq!(parsed.events.len(), 3);
    assert!(parsed.line_format);
}

#[test]
fn what_was_written_reads_as_the_array_of_its_events() {
    let events = vec![ev("m1", 1), ev("m\"2", 2)];
    for rendered in [render(&events), render_append(&events)] {
        let array: Vec<u8> = as_json_array(&rendered).concat();
        let back: Vec<Value> = serde_json::from_slice(&array).unwrap();
        let sent: Vec<Value> = events.iter().map(MessagingEvent::to_value).collect();
        assert_eq!(back, sent);
    }
}

#[test]
fn original_single_line_files_parse_but_are_not_line_format() {
    let bytes = serde_json::to_vec(&vec![value("m1", 1), value("m2", 2)]).unwrap();
    let parsed = parse(&bytes);
    assert_eq!(parsed.events.len(), 2);
    assert!(!parsed.line_format);
}

#[test]
fn a_torn_tail_keeps_every_complete_line() {
    let bytes = render(&[ev("m1", 1), ev("m2", 2)]);
    let mut torn = bytes[..bytes.len() - TAIL.len()].to_vec();
    torn.extend_from_slice(b",\n{\"sender\":{\"id\":\"1\"},\"timest");
    let parsed = parse(&torn);
    assert_eq!(parsed.events, vec![ev("m1", 1), ev("m2", 2)]);
    assert_eq!(parsed.dropped_lines, 1);
    assert!(!parsed.damaged_before_end);
}

#[test]
fn damage_in_the_middle_is_reported() {
    let bytes = b"[\n{\"a\":1},\nGARBAGE,\n{\"b\":2}\n]\n";
    let parsed = parse(bytes);
    assert_eq!(parsed.events.len(), 2);
    assert!(parsed.damaged_before_end);
}

#[test]
fn keys_prefer_the_mid_and_ignore_key_order_otherwise() {
    assert_eq!(event_key(&value("m1", 1)), event_key(&value("m1", 2)));
    assert_ne!(event_key(&value("m1", 1)), event_key(&value("m2", 1)));
    let a: Value = serde_json::from_str(r#"{"sender":{"id":"1"},"read":{"watermark":5}}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"read":{"watermark":5},"sender":{"id":"1"}}"#).unwrap();
    assert_eq!(event_key(&a), event_key(&b));
    let c: Value = serde_json::from_str(r#"{"read":{"watermark":6},"sender":{"id":"1"}}"#).unwrap();
    assert_ne!(event_key(&a), event_key(&c));
}

#[test]
fn a_summary_learns_what_parsing_every_event_would() {
    let events: Vec<MessagingEvent> = [
        value("m1", 5),
        json!({"sender": {"id": "1"}, "delivery": {"mids": ["m1"], "watermark": 9}, "timestamp": 9}),
        json!({"message": {"mid": "m\"2\\é", "text": "x"}, "timestamp": 7.5}),
        json!({"message": {"mid": 3}, "timestamp": "late"}),
        json!({"message": null}),
        json!({"message": {"text": "no mid"}, "timestamp": 8}),
        value("m1", 6),
    ]
    .into_iter()
    .map(MessagingEvent::from)
    .collect();
    let bytes = render(&events);
    let expected = Summary::of(&parse(&bytes).events, RecentKeys::complete());
    assert_eq!(expected.count, 7);
    assert_eq!(expected.last_timestamp, Some(9));
    let summary = summarize(&bytes, RecentKeys::complete()).expect("line format");
    assert_eq!(
        (summary.count, summary.last_timestamp),
        (expected.count, expected.last_timestamp)
    );
    assert_eq!(summary.keys.into_keys(), expected.keys.into_keys());
}

#[test]
fn a_summary_of_the_recent_keys_only_is_what_noting_every_event_gives() {
    let mut events: Vec<MessagingEvent> = (0..300).map(|n| ev(&format!("m{n}"), n)).collect();
    for (at, odd) in [
        (5, json!({"delivery": {"watermark": 1}})),
        (
            100,
            json!({"message": {"mid": "late-string"}, "timestamp": "late"}),
        ),
        (280, json!({"read": {"watermark": 2}})),
        (290, json!({"message": {"mid": 7}, "timestamp": 289.5})),
    ] {
        events.insert(at, odd.into());
    }
    let bytes = render(&events);
    for keys in [RecentKeys::bounded, RecentKeys::complete] {
        let expected = Summary::of(&events, keys());
        let summary = summarize(&bytes, keys()).expect("line format");
        assert_eq!(summary.count, expected.count);
        assert_eq!(summary.last_timestamp, expected.last_timestamp);
        assert_eq!(summary.keys, expected.keys);
    }
}

#[test]
fn only_clean_line_format_files_are_summarized() {
    let bytes = render(&[ev("m1", 1), ev("m2", 2)]);
    let torn = &bytes[..bytes.len() - 5];
    let single_line = serde_json::to_vec(&vec![value("m1", 1)]).unwrap();
    let pretty = serde_json::to_vec_pretty(&vec![value("m1", 1)]).unwrap();
    let missing_comma = b"[\n{\"a\":1}\n{\"b\":2}\n]\n";
    let trailing_comma = b"[\n{\"a\":1},\n]\n";
    for bad in [torn, &single_line, &pretty, missing_comma, trailing_comma] {
        let summary = summarize(bad, RecentKeys::complete());
        assert!(summary.is_none(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn sorting_is_stable_and_carries_missing_timestamps() {
    let no_ts = MessagingEvent::from(json!({"delivery": {"watermark": 1}}));
    let mut events = vec![ev("b", 5), no_ts.clone(), ev("a", 1), ev("c", 5)];
    sort_chronologically(&mut events);
    let order: Vec<EventKey> = events.iter().map(MessagingEvent::key).collect();
    let expected: Vec<EventKey> = [ev("a", 1), ev("b", 5), no_ts, ev("c", 5)]
        .iter()
        .map(MessagingEvent::key)
        .collect();
    assert_eq!(order, expected);
}
