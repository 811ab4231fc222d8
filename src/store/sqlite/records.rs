//! Certificates, sessions, the command index and the audit log: synchronous functions run
//! inside the transaction the caller opened.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::model::{AuditEvent, CommandRecord, IssuedCert, NewAuditEvent, Session, UnixTime};
use crate::store::audit::{GENESIS, Head, seal};
use crate::store::{CommandFilter, SessionEnd, SessionFilter, StoreError};

/// The extended result code of a failed constraint, if `e` is one.
fn constraint(e: &rusqlite::Error) -> Option<i32> {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Some(f.extended_code)
        }
        _ => None,
    }
}

const FOREIGN_KEY: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY;
const PRIMARY_KEY: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY;
const UNIQUE: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE;

/// Appends `event` to the chain: `seq` and `prev_hash` come from the last stored event, read
/// in the caller's write transaction, so concurrent appends cannot fork the chain.
pub(super) fn append(conn: &Connection, event: NewAuditEvent) -> Result<AuditEvent, StoreError> {
    let (seq, prev) = match audit_head(conn)? {
        Some(h) => (h.seq + 1, h.hash),
        None => (1, GENESIS.to_string()),
    };
    let data = serde_json::to_string(&event.data)
        .map_err(|e| StoreError::Db(format!("audit data: {e}")))?;
    let sealed = seal(seq, event, &prev);
    let e = &sealed.event;
    conn.prepare_cached(
        "INSERT INTO audit_events (seq, at, kind, actor, request_id, session_id, data, \
         prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        sealed.seq,
        e.at,
        e.kind,
        e.actor,
        e.request_id,
        e.session_id,
        data,
        sealed.prev_hash,
        sealed.hash,
    ])?;
    Ok(sealed)
}

/// The newest event's number and hash (`None` while the log is empty).
pub(super) fn audit_head(conn: &Connection) -> Result<Option<Head>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| {
            Ok(Head {
                seq: r.get(0)?,
                hash: r.get(1)?,
            })
        })
        .optional()?)
}

pub(super) fn audit_events(
    conn: &Connection,
    since: Option<UnixTime>,
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT seq, at, kind, actor, request_id, session_id, data, prev_hash, hash \
         FROM audit_events WHERE ?1 IS NULL OR at >= ?1 ORDER BY seq",
    )?;
    let mut rows = st.query([since])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let text: String = r.get(6)?;
        let data: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
            StoreError::Db(format!(
                "audit event {seq}: data is not a JSON object of strings: {e}"
            ))
        })?;
        // The chain hashes the parsed map, so the text must be the one form `append` writes:
        // `{"command":"rm -rf /x","command":"ls"}` parses to the map of the second (its hash
        // holds), while SQLite's `json_extract` reads the first.
        if serde_json::to_string(&data).ok().as_deref() != Some(text.as_str()) {
            return Err(StoreError::Db(format!(
                "audit event {seq}: data is not stored as it was written: {text}"
            )));
        }
        out.push(AuditEvent {
            seq,
            event: NewAuditEvent {
                at: r.get(1)?,
                kind: r.get(2)?,
                actor: r.get(3)?,
                request_id: r.get(4)?,
                session_id: r.get(5)?,
                data,
            },
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
        });
    }
    Ok(out)
}

pub(super) fn record_cert(conn: &Connection, cert: IssuedCert) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO certs (serial, request_id, user, key_fingerprint, valid_after, \
         valid_before, issued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        cert.serial,
        cert.request_id,
        cert.user,
        cert.key_fingerprint,
        cert.valid_after,
        cert.valid_before,
        cert.issued_at,
    ])
    .map_err(|e| match constraint(&e) {
        Some(FOREIGN_KEY) => StoreError::NoRequest(cert.request_id),
        Some(PRIMARY_KEY | UNIQUE) => StoreError::Conflict(format!(
            "a certificate with serial {} was recorded already",
            cert.serial
        )),
        _ => e.into(),
    })?;
    append(
        conn,
        NewAuditEvent::new(cert.issued_at, "cert.issued", &cert.user)
            .request(cert.request_id)
            .with("serial", cert.serial)
            .with("key_fingerprint", &cert.key_fingerprint)
            .with("valid_after", cert.valid_after)
            .with("valid_before", cert.valid_before),
    )?;
    Ok(())
}

pub(super) fn cert_by_serial(
    conn: &Connection,
    serial: u64,
) -> Result<Option<IssuedCert>, StoreError> {
    let Ok(serial) = i64::try_from(serial) else {
        return Ok(None);
    };
    Ok(conn
        .prepare_cached(
            "SELECT serial, request_id, user, key_fingerprint, valid_after, valid_before, \
             issued_at FROM certs WHERE serial = ?1",
        )?
        .query_row([serial], |r| {
            Ok(IssuedCert {
                serial: r.get(0)?,
                request_id: r.get(1)?,
                user: r.get(2)?,
                key_fingerprint: r.get(3)?,
                valid_after: r.get(4)?,
                valid_before: r.get(5)?,
                issued_at: r.get(6)?,
            })
        })
        .optional()?)
}

const SESSION_COLUMNS: &str = "s.id, s.request_id, s.user, s.host, s.login, s.started_at, \
     s.ended_at, s.exit_status, s.bytes_up, s.bytes_down, s.recording, s.exit_signal";

/// A session from columns `offset..offset + 12` (see `SESSION_COLUMNS`).
fn session_from_row(r: &Row, offset: usize) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get(offset)?,
        request_id: r.get(offset + 1)?,
        user: r.get(offset + 2)?,
        host: r.get(offset + 3)?,
        login: r.get(offset + 4)?,
        started_at: r.get(offset + 5)?,
        ended_at: r.get(offset + 6)?,
        exit_status: r.get(offset + 7)?,
        bytes_up: r.get(offset + 8)?,
        bytes_down: r.get(offset + 9)?,
        recording: r.get(offset + 10)?,
        exit_signal: r.get(offset + 11)?,
    })
}

pub(super) fn start_session(conn: &Connection, s: Session) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, request_id, user, host, login, started_at, ended_at, \
         exit_status, bytes_up, bytes_down, recording, exit_signal) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        s.id,
        s.request_id,
        s.user,
        s.host,
        s.login,
        s.started_at,
        s.ended_at,
        s.exit_status,
        s.bytes_up,
        s.bytes_down,
        s.recording,
        s.exit_signal,
    ])
    .map_err(|e| match constraint(&e) {
        Some(FOREIGN_KEY) => StoreError::NoRequest(s.request_id),
        Some(PRIMARY_KEY | UNIQUE) => {
            StoreError::Conflict(format!("session {} was started already", s.id))
        }
        _ => e.into(),
    })?;
    let mut ev = NewAuditEvent::new(s.started_at, "session.started", &s.user)
        .request(s.request_id)
        .session(&s.id)
        .with("host", &s.host)
        .with("login", &s.login);
    if let Some(rec) = &s.recording {
        ev = ev.with("recording", rec);
    }
    append(conn, ev)?;
    Ok(())
}

pub(super) fn get_session(conn: &Connection, id: &str) -> Result<Option<Session>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = ?1"
        ))?
        .query_row([id], |r| session_from_row(r, 0))
        .optional()?)
}

pub(super) fn end_session(
    conn: &Connection,
    id: &str,
    end: SessionEnd<'_>,
) -> Result<(), StoreError> {
    let s = get_session(conn, id)?.ok_or_else(|| StoreError::NoSession(id.to_string()))?;
    if s.ended_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "session {id} was closed already"
        )));
    }
    conn.prepare_cached(
        "UPDATE sessions SET ended_at = ?2, exit_status = ?3, exit_signal = ?4, bytes_up = ?5, \
         bytes_down = ?6, recording_sha256 = ?7 WHERE id = ?1",
    )?
    .execute(params![
        id,
        end.ended_at,
        end.exit_status,
        end.exit_signal,
        end.bytes_up,
        end.bytes_down,
        end.recording_sha256
    ])?;
    let mut ev = NewAuditEvent::new(end.ended_at, "session.closed", &s.user)
        .request(s.request_id)
        .session(id)
        .with("bytes_up", end.bytes_up)
        .with("bytes_down", end.bytes_down);
    if let Some(status) = end.exit_status {
        ev = ev.with("exit_status", status);
    }
    if let Some(signal) = end.exit_signal {
        ev = ev.with("exit_signal", signal);
    }
    if let Some(rec) = &s.recording {
        ev = ev.with("recording", rec);
    }
    if let Some(sha) = end.recording_sha256 {
        ev = ev.with("recording_sha256", sha);
    }
    if let Some(error) = end.recording_error {
        ev = ev.with("recording_error", error);
    }
    if end.cut_off {
        ev = ev.with("cut_off", "sealed at the next start");
    }
    append(conn, ev)?;
    Ok(())
}

pub(super) fn list_sessions(
    conn: &Connection,
    f: &SessionFilter,
) -> Result<Vec<Session>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s \
         WHERE (?1 IS NULL OR s.user = ?1) AND (?2 IS NULL OR s.host = ?2) \
           AND (?3 IS NULL OR s.started_at >= ?3) AND (?4 IS NULL OR s.request_id = ?4) \
           AND (?5 = 0 OR s.ended_at IS NULL) \
         ORDER BY s.started_at DESC, s.rowid DESC"
    ))?;
    let rows = st.query_map(
        params![f.user, f.host, f.since, f.request_id, f.open],
        |r| session_from_row(r, 0),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn record_command(conn: &Connection, c: CommandRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO commands (session_id, at, text, verdict, rule) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![c.session_id, c.at, c.text, c.verdict, c.rule])
    .map_err(|e| match constraint(&e) {
        Some(FOREIGN_KEY) => StoreError::NoSession(c.session_id.clone()),
        _ => e.into(),
    })?;
    Ok(())
}

pub(super) fn list_commands(
    conn: &Connection,
    f: &CommandFilter,
) -> Result<Vec<(CommandRecord, Session)>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT c.session_id, c.at, c.text, c.verdict, c.rule, {SESSION_COLUMNS} \
         FROM commands c JOIN sessions s ON s.id = c.session_id \
         WHERE (?1 IS NULL OR s.user = ?1) AND (?2 IS NULL OR s.host = ?2) \
           AND (?3 IS NULL OR c.at >= ?3) AND (?4 IS NULL OR s.request_id = ?4) \
           AND (?5 IS NULL OR c.verdict = ?5) \
         ORDER BY c.at DESC, c.id DESC"
    ))?;
    let rows = st.query_map(
        params![f.user, f.host, f.since, f.request_id, f.verdict],
        |r| {
            Ok((
                CommandRecord {
                    session_id: r.get(0)?,
                    at: r.get(1)?,
                    text: r.get(2)?,
                    verdict: r.get(3)?,
                    rule: r.get(4)?,
                },
                session_from_row(r, 5)?,
            ))
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}
