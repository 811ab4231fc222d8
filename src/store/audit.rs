//! The hash chain of the audit log: pure functions, no SQL.
//!
//! Every stored event carries `seq` (1, 2, 3, ... with no gaps), `prev_hash` (the `hash` of
//! event `seq - 1`, or [`GENESIS`] for event 1) and `hash`, computed by [`event_hash`]:
//!
//! ```text
//! hash = lowercase hex( SHA-256( encoding ) )
//!
//! encoding, in this order (u64/i64 are 8 bytes, big-endian; str(s) is u64 byte length of
//! the UTF-8 text, then the bytes):
//!   str("jitgate-audit-v1")          domain separation and version of this encoding
//!   i64 seq
//!   str(prev_hash)                   the 64 hex characters, as stored
//!   i64 at                           Unix seconds
//!   str(kind)
//!   str(actor)
//!   request_id: byte 0x00            when absent
//!               byte 0x01, i64 id    when present
//!   session_id: byte 0x00            when absent
//!               byte 0x01, str(id)   when present
//!   u64 number of data entries
//!   for each data entry, keys in ascending byte order: str(key), str(value)
//! ```
//!
//! Every variable-length field is length-prefixed, so no two different events share an
//! encoding. Editing any field of an event changes its hash; deleting or reordering events
//! breaks the numbering or the links. [`verify_chain`] names the first such problem.
//!
//! What a chain alone cannot show: removal of the newest events, or a rewrite of every event
//! after an edit by someone who recomputes all later hashes. A [`Head`] kept outside the
//! database closes that gap: `audit verify` prints the latest one as `SEQ:HASH`, and
//! `audit verify --head SEQ:HASH` later checks ([`check_head`]) that the log still holds
//! that event unchanged, so events cut off its end, or a rewritten past, show.

use sha2::{Digest, Sha256};

use crate::model::{AuditEvent, NewAuditEvent};

/// The `prev_hash` of the first event: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Version tag that starts every encoding.
const DOMAIN: &str = "jitgate-audit-v1";

/// Hex SHA-256 of event number `seq`, chained to `prev_hash` (see the module comment).
pub fn event_hash(seq: i64, event: &NewAuditEvent, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    put_str(&mut h, DOMAIN);
    h.update(seq.to_be_bytes());
    put_str(&mut h, prev_hash);
    h.update(event.at.to_be_bytes());
    put_str(&mut h, &event.kind);
    put_str(&mut h, &event.actor);
    match event.request_id {
        None => h.update([0u8]),
        Some(id) => {
            h.update([1u8]);
            h.update(id.to_be_bytes());
        }
    }
    match &event.session_id {
        None => h.update([0u8]),
        Some(id) => {
            h.update([1u8]);
            put_str(&mut h, id);
        }
    }
    // BTreeMap<String, _> iterates keys in ascending byte order.
    h.update((event.data.len() as u64).to_be_bytes());
    for (k, v) in &event.data {
        put_str(&mut h, k);
        put_str(&mut h, v);
    }
    hex::encode(h.finalize())
}

fn put_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

/// Numbers and chains `event` after the event whose hash is `prev_hash`.
pub fn seal(seq: i64, event: NewAuditEvent, prev_hash: &str) -> AuditEvent {
    let hash = event_hash(seq, &event, prev_hash);
    AuditEvent {
        seq,
        event,
        prev_hash: prev_hash.to_string(),
        hash,
    }
}

/// The first thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// A sequence number is skipped: a row was deleted.
    #[error("{}", missing_message(*.seq, *.before, *.after))]
    Missing {
        seq: i64,
        /// The event before the gap (`None` when the gap is at the start).
        before: Option<i64>,
        /// The event found where `seq` should be.
        after: i64,
    },
    /// A sequence number goes backwards or repeats: rows were reordered or duplicated.
    #[error("event {seq} is out of order (it comes after event {after})")]
    OutOfOrder { seq: i64, after: i64 },
    /// The stored hash does not match the event's content: the event was edited.
    #[error("event {seq} ({kind}) was altered: its hash does not match its content")]
    Edited { seq: i64, kind: String },
    /// The event's `prev_hash` is not the previous event's hash.
    #[error("event {seq} ({kind}) does not chain to {}", link_target(*.seq))]
    BrokenLink { seq: i64, kind: String },
    /// The log ends before a kept head: its newest events were removed.
    #[error("{}", cut_message(.head, *.last))]
    Cut { head: Head, last: i64 },
    /// The event at a kept head's number has another hash.
    #[error(
        "event {} is not the kept head: its hash is {have}, the head says {}; \
         the log was rewritten up to there, or the head is from another log",
        .head.seq, .head.hash
    )]
    NotHead { head: Head, have: String },
}

fn cut_message(head: &Head, last: i64) -> String {
    let gone = if head.seq == last + 1 {
        format!("event {} was", head.seq)
    } else {
        format!("events {}-{} were", last + 1, head.seq)
    };
    let ends = if last == 0 {
        "the log is empty".to_string()
    } else {
        format!("the log ends at event {last}")
    };
    format!("{ends}, short of the kept head {head}: {gone} removed from its end")
}

fn missing_message(seq: i64, before: Option<i64>, after: i64) -> String {
    match before {
        Some(b) => format!("event {seq} is missing ({b} is followed by {after})"),
        None => format!("event {seq} is missing (the log starts at {after})"),
    }
}

fn link_target(seq: i64) -> String {
    if seq == 1 {
        "the start of the log: its prev_hash is not the genesis hash".to_string()
    } else {
        format!("event {}: its prev_hash is not that event's hash", seq - 1)
    }
}

/// Checks a whole log, oldest first, starting at event 1: numbering without gaps, every hash,
/// every link. Returns the number of events, or the first break.
pub fn verify_chain(events: &[AuditEvent]) -> Result<usize, ChainBreak> {
    let mut prev: Option<&AuditEvent> = None;
    for (i, ev) in events.iter().enumerate() {
        let expected = prev.map_or(1, |p| p.seq + 1);
        if ev.seq > expected {
            if events[i + 1..].iter().any(|later| later.seq == expected) {
                // Present, but further down: the rows were reordered.
                return Err(ChainBreak::OutOfOrder {
                    seq: expected,
                    after: ev.seq,
                });
            }
            return Err(ChainBreak::Missing {
                seq: expected,
                before: prev.map(|p| p.seq),
                after: ev.seq,
            });
        }
        if ev.seq < expected {
            return Err(ChainBreak::OutOfOrder {
                seq: ev.seq,
                after: prev.map_or(0, |p| p.seq),
            });
        }
        if event_hash(ev.seq, &ev.event, &ev.prev_hash) != ev.hash {
            return Err(ChainBreak::Edited {
                seq: ev.seq,
                kind: ev.event.kind.clone(),
            });
        }
        let want = prev.map_or(GENESIS, |p| p.hash.as_str());
        if ev.prev_hash != want {
            return Err(ChainBreak::BrokenLink {
                seq: ev.seq,
                kind: ev.event.kind.clone(),
            });
        }
        prev = Some(ev);
    }
    Ok(events.len())
}

/// An event a chain must still hold, kept from an earlier `audit verify`: written `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl Head {
    /// The newest event of a log (`None` for an empty one).
    pub fn of(events: &[AuditEvent]) -> Option<Head> {
        events.last().map(|e| Head {
            seq: e.seq,
            hash: e.hash.clone(),
        })
    }
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Head {
    type Err = String;

    fn from_str(s: &str) -> Result<Head, String> {
        let bad = || {
            format!(
                "{s:?} is not a head: expected SEQ:HASH as `audit verify` prints it \
                 (an event number, a colon, 64 lowercase hex digits)"
            )
        };
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq: i64 = seq.parse().map_err(|_| bad())?;
        let hex = hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if seq < 1 || !hex {
            return Err(bad());
        }
        Ok(Head {
            seq,
            hash: hash.to_string(),
        })
    }
}

/// Checks that a log [`verify_chain`] accepted still holds `head` unchanged. Events are
/// numbered from 1 without gaps there, so event `n` is at index `n - 1`.
pub fn check_head(events: &[AuditEvent], head: &Head) -> Result<(), ChainBreak> {
    let at = usize::try_from(head.seq - 1).ok();
    match at.and_then(|i| events.get(i)) {
        None => Err(ChainBreak::Cut {
            head: head.clone(),
            last: events.last().map_or(0, |e| e.seq),
        }),
        Some(e) if e.hash != head.hash => Err(ChainBreak::NotHead {
            head: head.clone(),
            have: e.hash.clone(),
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut out: Vec<AuditEvent> = Vec::new();
        for seq in 1..=n {
            let ev = NewAuditEvent::new(1_800_000_000 + seq, "request.approval", "bob")
                .request(seq)
                .with("comment", format!("ok {seq}"));
            let prev = out.last().map_or(GENESIS.to_string(), |p| p.hash.clone());
            out.push(seal(seq, ev, &prev));
        }
        out
    }

    #[test]
    fn genesis_is_64_zeros() {
        assert_eq!(GENESIS.len(), 64);
        assert!(GENESIS.bytes().all(|b| b == b'0'));
    }

    #[test]
    fn hash_is_stable_and_documented() {
        // Pins the encoding: another implementation following the module comment must
        // produce this hash.
        let ev = NewAuditEvent::new(1_700_000_000, "request.created", "alice")
            .request(42)
            .session("s-1")
            .with("b", "2")
            .with("a", "1");
        let mut enc = Vec::new();
        let s = |enc: &mut Vec<u8>, t: &str| {
            enc.extend((t.len() as u64).to_be_bytes());
            enc.extend(t.as_bytes());
        };
        s(&mut enc, "jitgate-audit-v1");
        enc.extend(7i64.to_be_bytes());
        s(&mut enc, GENESIS);
        enc.extend(1_700_000_000i64.to_be_bytes());
        s(&mut enc, "request.created");
        s(&mut enc, "alice");
        enc.push(1);
        enc.extend(42i64.to_be_bytes());
        enc.push(1);
        s(&mut enc, "s-1");
        enc.extend(2u64.to_be_bytes());
        s(&mut enc, "a");
        s(&mut enc, "1");
        s(&mut enc, "b");
        s(&mut enc, "2");
        let want = hex::encode(Sha256::digest(&enc));
        assert_eq!(event_hash(7, &ev, GENESIS), want);
    }

    #[test]
    fn encoding_is_unambiguous() {
        let base = NewAuditEvent::new(1, "k", "ab");
        let pairs = [
            // Moving a character between adjacent fields.
            (
                NewAuditEvent::new(1, "k", "ab"),
                NewAuditEvent::new(1, "ka", "b"),
            ),
            // Key/value boundary inside data.
            (base.clone().with("ab", "c"), base.clone().with("a", "bc")),
            // Absent versus empty session.
            (base.clone(), base.clone().session("")),
            // Absent request versus request 0.
            (base.clone(), base.clone().request(0)),
        ];
        for (a, b) in pairs {
            assert_ne!(event_hash(1, &a, GENESIS), event_hash(1, &b, GENESIS));
        }
    }

    #[test]
    fn breaks_are_detected_and_named() {
        type Tamper = fn(&mut Vec<AuditEvent>);
        let cases: &[(&str, Tamper, Result<usize, ChainBreak>, &str)] = &[
            ("intact", |_| {}, Ok(10), ""),
            ("empty log", |c| c.clear(), Ok(0), ""),
            (
                "deleted middle row",
                |c| {
                    c.remove(6);
                },
                Err(ChainBreak::Missing {
                    seq: 7,
                    before: Some(6),
                    after: 8,
                }),
                "event 7 is missing (6 is followed by 8)",
            ),
            (
                "deleted first row",
                |c| {
                    c.remove(0);
                },
                Err(ChainBreak::Missing {
                    seq: 1,
                    before: None,
                    after: 2,
                }),
                "event 1 is missing (the log starts at 2)",
            ),
            (
                "edited actor",
                |c| c[3].event.actor = "mallory".into(),
                Err(ChainBreak::Edited {
                    seq: 4,
                    kind: "request.approval".into(),
                }),
                "event 4 (request.approval) was altered: its hash does not match its content",
            ),
            (
                "edited data value",
                |c| {
                    c[4].event.data.insert("comment".into(), "forged".into());
                },
                Err(ChainBreak::Edited {
                    seq: 5,
                    kind: "request.approval".into(),
                }),
                "event 5 (request.approval) was altered: its hash does not match its content",
            ),
            (
                "added data entry",
                |c| {
                    c[4].event.data.insert("extra".into(), "x".into());
                },
                Err(ChainBreak::Edited {
                    seq: 5,
                    kind: "request.approval".into(),
                }),
                "event 5 (request.approval) was altered: its hash does not match its content",
            ),
            (
                "edited time",
                |c| c[1].event.at += 1,
                Err(ChainBreak::Edited {
                    seq: 2,
                    kind: "request.approval".into(),
                }),
                "event 2 (request.approval) was altered: its hash does not match its content",
            ),
            (
                "edited kind",
                |c| c[1].event.kind = "request.denied".into(),
                Err(ChainBreak::Edited {
                    seq: 2,
                    kind: "request.denied".into(),
                }),
                "event 2 (request.denied) was altered: its hash does not match its content",
            ),
            (
                "swapped order",
                |c| c.swap(2, 3),
                Err(ChainBreak::OutOfOrder { seq: 3, after: 4 }),
                "event 3 is out of order (it comes after event 4)",
            ),
            (
                "swapped contents, numbers kept",
                |c| {
                    let (a, b) = (c[2].clone(), c[3].clone());
                    c[2] = AuditEvent { seq: 3, ..b };
                    c[3] = AuditEvent { seq: 4, ..a };
                },
                Err(ChainBreak::Edited {
                    seq: 3,
                    kind: "request.approval".into(),
                }),
                "event 3 (request.approval) was altered: its hash does not match its content",
            ),
            (
                "duplicated row",
                |c| {
                    let d = c[4].clone();
                    c.insert(5, d);
                },
                Err(ChainBreak::OutOfOrder { seq: 5, after: 5 }),
                "event 5 is out of order (it comes after event 5)",
            ),
            (
                "edited and rehashed, next link broken",
                |c| {
                    let mut ev = c[5].event.clone();
                    ev.actor = "mallory".into();
                    c[5] = seal(6, ev, &c[4].hash.clone());
                },
                Err(ChainBreak::BrokenLink {
                    seq: 7,
                    kind: "request.approval".into(),
                }),
                "event 7 (request.approval) does not chain to event 6: its prev_hash is not \
                 that event's hash",
            ),
            (
                "first event edited and rehashed",
                |c| {
                    let mut ev = c[0].event.clone();
                    ev.at -= 3600;
                    c[0] = seal(1, ev, GENESIS);
                },
                Err(ChainBreak::BrokenLink {
                    seq: 2,
                    kind: "request.approval".into(),
                }),
                "event 2 (request.approval) does not chain to event 1: its prev_hash is not \
                 that event's hash",
            ),
            (
                "lone first event not from genesis",
                |c| {
                    let ev = c[0].event.clone();
                    c.clear();
                    c.push(seal(1, ev, &"f".repeat(64)));
                },
                Err(ChainBreak::BrokenLink {
                    seq: 1,
                    kind: "request.approval".into(),
                }),
                "event 1 (request.approval) does not chain to the start of the log: its \
                 prev_hash is not the genesis hash",
            ),
        ];
        for (name, tamper, want, message) in cases {
            let mut c = chain(10);
            tamper(&mut c);
            let got = verify_chain(&c);
            assert_eq!(&got, want, "{name}");
            if let Err(e) = got {
                assert_eq!(e.to_string(), *message, "{name}");
            }
        }
    }

    #[test]
    fn a_kept_head_shows_a_cut_end_or_a_rewrite() {
        let c = chain(10);
        let head = Head::of(&c[..7]).unwrap();
        assert_eq!(head.to_string(), format!("7:{}", c[6].hash));
        assert_eq!(head.to_string().parse::<Head>(), Ok(head.clone()));
        // Later events are fine; the head itself is fine.
        assert_eq!(check_head(&c, &head), Ok(()));
        assert_eq!(check_head(&c[..7], &head), Ok(()));

        let cut = check_head(&c[..6], &head).unwrap_err();
        assert_eq!(
            cut,
            ChainBreak::Cut {
                head: head.clone(),
                last: 6
            }
        );
        assert_eq!(
            cut.to_string(),
            format!(
                "the log ends at event 6, short of the kept head {head}: event 7 was removed from its end"
            )
        );
        let cut = check_head(&c[..4], &head).unwrap_err();
        assert!(cut.to_string().contains("events 5-7 were removed"), "{cut}");
        let cut = check_head(&[], &head).unwrap_err();
        assert!(cut.to_string().starts_with("the log is empty"), "{cut}");

        // The whole log re-sealed after an edit: intact as a chain, but not the kept one.
        let mut forged: Vec<AuditEvent> = Vec::new();
        for (i, e) in c.iter().enumerate() {
            let mut ev = e.event.clone();
            if i == 2 {
                ev.actor = "mallory".into();
            }
            let prev = forged
                .last()
                .map_or(GENESIS.to_string(), |p| p.hash.clone());
            forged.push(seal(e.seq, ev, &prev));
        }
        assert_eq!(verify_chain(&forged), Ok(10));
        let e = check_head(&forged, &head).unwrap_err();
        assert!(matches!(&e, ChainBreak::NotHead { have, .. } if *have == forged[6].hash));
        assert!(
            e.to_string().starts_with("event 7 is not the kept head"),
            "{e}"
        );
    }

    #[test]
    fn a_head_is_read_strictly() {
        let hash = "a".repeat(64);
        assert_eq!(
            format!("12:{hash}").parse::<Head>(),
            Ok(Head {
                seq: 12,
                hash: hash.clone()
            })
        );
        for bad in [
            hash.clone(),
            format!("0:{hash}"),
            format!("-1:{hash}"),
            format!("x:{hash}"),
            format!("12:{}", "A".repeat(64)),
            format!("12:{}", &hash[1..]),
            format!("12:{hash}0"),
            format!("12: {hash}"),
        ] {
            let err = bad.parse::<Head>().unwrap_err();
            assert!(err.contains("expected SEQ:HASH"), "{bad}: {err}");
        }
    }
}
