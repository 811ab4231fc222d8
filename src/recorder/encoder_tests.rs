//! The encoder: line order, masking, UTF-8, the exec cap, drop markers.

use super::*;
use crate::config::DEFAULT_MASKS;
use crate::recorder::cast::{CastSummary, validate_cast};

const HEADER: &str = "{\"version\":2,\"width\":80,\"height\":24}\n";

fn encoder(masks: bool, cap: Option<u64>) -> Encoder {
    let p: Vec<String> = if masks {
        DEFAULT_MASKS.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let m = Masker::new(&p).expect("masks compile");
    Encoder::new(Arc::new(m), HEADER.len() as u64, cap)
}

fn file(e: &mut Encoder) -> String {
    let body = String::from_utf8(e.pending().to_vec()).expect("utf-8");
    e.written();
    format!("{HEADER}{body}")
}

fn finished(mut e: Encoder) -> (String, CastSummary) {
    e.finish();
    let text = file(&mut e);
    let summary = validate_cast(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    (text, summary)
}

#[test]
fn events_become_lines_in_arrival_order() {
    let mut e = encoder(true, None);
    e.push(0.5, Event::Output(b"$ ".to_vec().into()));
    e.push(0.75, Event::Input(b"l".to_vec().into()));
    e.push(1.0, Event::Resize(120, 40));
    e.push(1.25, Event::Marker("guardrail block: prod/rm".into()));
    e.push(1.5, Event::Output("ü\r\n".as_bytes().to_vec().into()));
    let (text, s) = finished(e);
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            r#"[0.500000, "o", "$ "]"#,
            r#"[0.750000, "i", "l"]"#,
            r#"[1.000000, "r", "120x40"]"#,
            r#"[1.250000, "m", "guardrail block: prod/rm"]"#,
            r#"[1.500000, "o", "ü\r\n"]"#,
        ]
    );
    assert_eq!(s.events, 5);
}

#[test]
fn a_marker_waits_for_output_held_before_it() {
    let mut e = encoder(true, None);
    e.push(0.0, Event::Output(b"key AKIAIOSF".to_vec().into()));
    e.push(0.01, Event::Marker("m".into()));
    // Held for masking: the marker must not overtake the output.
    assert!(e.pending.is_empty());
    assert_eq!(e.deadline(), Some(super::super::mask::HOLD));
    e.push(0.02, Event::Output(b"ODNN7EXAMPLE\n".to_vec().into()));
    e.tick(1.0);
    let (text, s) = finished(e);
    assert_eq!(s.output, "key [MASKED]\n");
    let codes: Vec<&str> = text.lines().skip(1).map(|l| &l[11..14]).collect();
    assert_eq!(codes, ["\"o\"", "\"m\"", "\"o\""], "{text}");
}

#[test]
fn times_never_go_back() {
    let mut e = encoder(false, None);
    e.push(2.0, Event::Output(b"a".to_vec().into()));
    e.push(1.0, Event::Output(b"b".to_vec().into()));
    e.push(f64::NAN, Event::Output(b"c".to_vec().into()));
    let (_, s) = finished(e);
    assert_eq!((s.events, s.duration), (3, 2.0));
}

#[test]
fn split_characters_are_joined_and_bad_bytes_replaced() {
    let mut e = encoder(false, None);
    let euro = "€".as_bytes();
    e.push(0.0, Event::Output(euro[..1].to_vec().into()));
    e.push(0.1, Event::Output(euro[1..].to_vec().into()));
    e.push(0.2, Event::Output(b"\xff\xe2".to_vec().into()));
    let (_, s) = finished(e);
    assert_eq!(s.output, "€\u{fffd}\u{fffd}");
}

#[test]
fn an_exec_recording_stops_at_the_cap_with_a_marker() {
    let cap = HEADER.len() as u64 + 200;
    let mut e = encoder(false, Some(cap));
    for i in 0..100 {
        e.push(i as f64, Event::Output(b"0123456789".to_vec().into()));
    }
    assert!(e.capped());
    e.push(200.0, Event::Marker("after".into()));
    let (text, s) = finished(e);
    let last = s.markers.last().expect("cap marker");
    assert!(last.contains("capped"), "{last}");
    assert_eq!(s.markers.len(), 1, "nothing after the cap");
    // Only the marker line goes past the cap.
    let before_marker = text.len() - text.lines().last().map_or(0, |l| l.len() + 1);
    assert!(before_marker as u64 <= cap);
    assert!(s.output_events > 0);
}

#[test]
fn an_idle_session_holds_nothing_after_the_deadline() {
    let mut e = encoder(true, None);
    e.push(3.0, Event::Output(b"prompt$ ".to_vec().into()));
    let due = e.deadline().expect("held");
    e.tick(due);
    assert_eq!(e.deadline(), None);
    assert!(!e.pending.is_empty());
}

#[test]
fn bulk_output_released_in_parts_loses_nothing() {
    let mut e = encoder(true, None);
    let mut want = String::new();
    for i in 0..60 {
        let chunk = format!("line {i} {}\r\n", "x".repeat(i % 7 * 300));
        want.push_str(&chunk);
        e.push(i as f64 * 0.001, Event::Output(chunk.into_bytes().into()));
    }
    let (_, s) = finished(e);
    assert_eq!(s.output, want);
}

#[test]
fn a_busy_recording_reuses_its_buffer_and_a_quiet_one_gives_it_back() {
    let mut e = encoder(false, None);
    e.push(0.0, Event::Output(vec![b'x'; 200 << 10].into()));
    let big = e.pending().as_ptr();
    e.written();
    assert!(e.pending.capacity() >= 200 << 10, "kept for the next batch");
    e.push(0.1, Event::Output(vec![b'y'; 200 << 10].into()));
    assert_eq!(
        e.pending().as_ptr(),
        big,
        "the same allocation for the next batch"
    );
    e.written();
    e.push(0.2, Event::Output(b"z".to_vec().into()));
    e.written();
    assert_eq!(e.pending.capacity(), 0);
}
