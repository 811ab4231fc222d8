//! Requests, approvals, decisions, expiry and certificate serials: synchronous functions run
//! inside the transaction the caller opened.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::records::append;
use crate::config::RuleRef;
use crate::model::{AccessRequest, Approval, NewAuditEvent, NewRequest, RequestState, UnixTime};
use crate::store::{ApproveOutcome, RequestFilter, StoreError};

const COLUMNS: &str = "id, requester, host, login, ttl_secs, reason, rule_role, rule_index, \
     approvals_needed, state, created_at, pending_until, approved_at, expires_at, decided_by, \
     decision_reason, flagged, rule_digest";

/// A request row, without its approvals.
fn from_row(r: &Row) -> rusqlite::Result<AccessRequest> {
    let state: String = r.get(9)?;
    let state = RequestState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            9,
            rusqlite::types::Type::Text,
            format!("unknown request state {state:?}").into(),
        )
    })?;
    Ok(AccessRequest {
        id: r.get(0)?,
        requester: r.get(1)?,
        host: r.get(2)?,
        login: r.get(3)?,
        ttl_secs: r.get(4)?,
        reason: r.get(5)?,
        rule: RuleRef {
            role: r.get(6)?,
            index: r.get(7)?,
            digest: r.get(17)?,
        },
        approvals_needed: r.get(8)?,
        state,
        created_at: r.get(10)?,
        pending_until: r.get(11)?,
        approved_at: r.get(12)?,
        expires_at: r.get(13)?,
        decided_by: r.get(14)?,
        decision_reason: r.get(15)?,
        flagged: r.get(16)?,
        approvals: Vec::new(),
    })
}

fn approvals_of(conn: &Connection, id: i64) -> Result<Vec<Approval>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT approver, comment, at FROM approvals WHERE request_id = ?1 ORDER BY at, rowid",
    )?;
    let rows = st.query_map([id], |r| {
        Ok(Approval {
            approver: r.get(0)?,
            comment: r.get(1)?,
            at: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn get(conn: &Connection, id: i64) -> Result<Option<AccessRequest>, StoreError> {
    let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM requests WHERE id = ?1"))?;
    let Some(mut req) = st.query_row([id], from_row).optional()? else {
        return Ok(None);
    };
    req.approvals = approvals_of(conn, id)?;
    Ok(Some(req))
}

fn must_get(conn: &Connection, id: i64) -> Result<AccessRequest, StoreError> {
    get(conn, id)?.ok_or(StoreError::NoRequest(id))
}

fn end_of_access(now: UnixTime, ttl_secs: u64) -> Result<UnixTime, StoreError> {
    i64::try_from(ttl_secs)
        .ok()
        .and_then(|ttl| now.checked_add(ttl))
        .ok_or_else(|| StoreError::Db(format!("ttl of {ttl_secs}s is out of range")))
}

pub(super) fn create(conn: &Connection, new: NewRequest) -> Result<AccessRequest, StoreError> {
    let auto = new.approvals_needed == 0;
    let (state, approved_at, expires_at) = if auto {
        let end = end_of_access(new.created_at, new.ttl_secs)?;
        (RequestState::Approved, Some(new.created_at), Some(end))
    } else {
        (RequestState::Pending, None, None)
    };
    conn.prepare_cached(
        "INSERT INTO requests (requester, host, login, ttl_secs, reason, rule_role, rule_index, \
         approvals_needed, state, created_at, pending_until, approved_at, expires_at, \
         rule_digest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        new.requester,
        new.host,
        new.login,
        new.ttl_secs,
        new.reason,
        new.rule.role,
        new.rule.index,
        new.approvals_needed,
        state.as_str(),
        new.created_at,
        new.pending_until,
        approved_at,
        expires_at,
        new.rule.digest,
    ])?;
    let id = conn.last_insert_rowid();
    append(
        conn,
        NewAuditEvent::new(new.created_at, "request.created", &new.requester)
            .request(id)
            .with("host", &new.host)
            .with("login", &new.login)
            .with("ttl_secs", new.ttl_secs)
            .with("reason", &new.reason)
            .with("rule", &new.rule)
            .with("approvals_needed", new.approvals_needed)
            .with("pending_until", new.pending_until),
    )?;
    if let Some(end) = expires_at {
        append(
            conn,
            NewAuditEvent::new(new.created_at, "request.approved", "system")
                .request(id)
                .with("by", "policy")
                .with("rule", &new.rule)
                .with("expires_at", end),
        )?;
    }
    Ok(AccessRequest {
        id,
        requester: new.requester,
        host: new.host,
        login: new.login,
        ttl_secs: new.ttl_secs,
        reason: new.reason,
        rule: new.rule,
        approvals_needed: new.approvals_needed,
        state,
        created_at: new.created_at,
        pending_until: new.pending_until,
        approved_at,
        expires_at,
        decided_by: None,
        decision_reason: None,
        flagged: false,
        approvals: Vec::new(),
    })
}

pub(super) fn list(
    conn: &Connection,
    filter: &RequestFilter,
) -> Result<Vec<AccessRequest>, StoreError> {
    // One statement per filter shape, so that SQLite can pick an index for each.
    let mut sql = format!("SELECT {COLUMNS} FROM requests WHERE 1");
    if filter.pending_at.is_some() {
        sql.push_str(
            " AND state IN ('pending', 'approved') AND state = 'pending' AND pending_until > ?1",
        );
    }
    if filter.requester.is_some() {
        sql.push_str(" AND requester = ?2");
    }
    // Always there (a page of everything starts below `i64::MAX`): numbered parameters make
    // as many as the highest number, so all four always bind.
    sql.push_str(" AND id < ?4 ORDER BY id DESC LIMIT ?3");
    let mut st = conn.prepare_cached(&sql)?;
    let limit = filter.limit.map_or(-1, i64::from);
    let before = filter.before_id.unwrap_or(i64::MAX);
    let rows = st.query_map(
        params![filter.pending_at, filter.requester, limit, before],
        from_row,
    )?;
    let mut out: Vec<AccessRequest> = rows.collect::<Result<_, _>>()?;
    for req in &mut out {
        req.approvals = approvals_of(conn, req.id)?;
    }
    Ok(out)
}

pub(super) fn approve(
    conn: &Connection,
    id: i64,
    approver: &str,
    comment: Option<&str>,
    counted: &[String],
    now: UnixTime,
) -> Result<ApproveOutcome, StoreError> {
    let req = must_get(conn, id)?;
    let state = req.state_at(now);
    if state != RequestState::Pending {
        return Err(StoreError::WrongState { id, state });
    }
    // The primary key (request_id, approver) makes a repeat a no-op, even across processes.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO approvals (request_id, approver, comment, at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (request_id, approver) DO NOTHING",
        )?
        .execute(params![id, approver, comment, now])?;
    if inserted == 0 {
        return Ok(ApproveOutcome::AlreadyApproved(req));
    }
    // Approvals on record by people who have since lost the approver role stay listed but
    // do not count.
    let count = conn
        .prepare_cached("SELECT approver FROM approvals WHERE request_id = ?1")?
        .query_map([id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .filter(|a| counted.contains(a))
        .count();
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    let mut ev = NewAuditEvent::new(now, "request.approval", approver)
        .request(id)
        .with("approvals", count)
        .with("approvals_needed", req.approvals_needed);
    if let Some(c) = comment {
        ev = ev.with("comment", c);
    }
    append(conn, ev)?;
    if count >= req.approvals_needed {
        let end = end_of_access(now, req.ttl_secs)?;
        conn.prepare_cached(
            "UPDATE requests SET state = 'approved', approved_at = ?2, expires_at = ?3 \
             WHERE id = ?1",
        )?
        .execute(params![id, now, end])?;
        append(
            conn,
            NewAuditEvent::new(now, "request.approved", approver)
                .request(id)
                .with("by", "approvers")
                .with("approvals", count)
                .with("expires_at", end),
        )?;
    }
    Ok(ApproveOutcome::Counted(must_get(conn, id)?))
}

pub(super) fn deny(
    conn: &Connection,
    id: i64,
    by: &str,
    reason: &str,
    now: UnixTime,
) -> Result<AccessRequest, StoreError> {
    let req = must_get(conn, id)?;
    let state = req.state_at(now);
    if state != RequestState::Pending {
        return Err(StoreError::WrongState { id, state });
    }
    conn.prepare_cached(
        "UPDATE requests SET state = 'denied', decided_by = ?2, decision_reason = ?3 \
         WHERE id = ?1",
    )?
    .execute(params![id, by, reason])?;
    append(
        conn,
        NewAuditEvent::new(now, "request.denied", by)
            .request(id)
            .with("reason", reason),
    )?;
    must_get(conn, id)
}

pub(super) fn revoke(
    conn: &Connection,
    id: i64,
    by: &str,
    reason: &str,
    flag: bool,
    now: UnixTime,
) -> Result<AccessRequest, StoreError> {
    let req = must_get(conn, id)?;
    let state = req.state_at(now);
    if !matches!(state, RequestState::Pending | RequestState::Approved) {
        return Err(StoreError::WrongState { id, state });
    }
    conn.prepare_cached(
        "UPDATE requests SET state = 'revoked', decided_by = ?2, decision_reason = ?3, \
         flagged = ?4 WHERE id = ?1",
    )?
    .execute(params![id, by, reason, flag])?;
    append(
        conn,
        NewAuditEvent::new(now, "request.revoked", by)
            .request(id)
            .with("reason", reason)
            .with("was", state),
    )?;
    if flag {
        append(
            conn,
            NewAuditEvent::new(now, "request.flagged", by)
                .request(id)
                .with("reason", reason),
        )?;
    }
    must_get(conn, id)
}

pub(super) fn expire_due(
    conn: &Connection,
    now: UnixTime,
) -> Result<Vec<AccessRequest>, StoreError> {
    // The same conditions as `AccessRequest::state_at`; the `IN` term lets SQLite use the
    // partial index of open requests instead of scanning them all.
    let due: Vec<AccessRequest> = {
        let mut st = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM requests \
             WHERE state IN ('pending', 'approved') \
               AND ((state = 'pending' AND pending_until <= ?1) \
                 OR (state = 'approved' AND expires_at <= ?1)) \
             ORDER BY id"
        ))?;
        st.query_map([now], from_row)?.collect::<Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(due.len());
    for req in due {
        conn.prepare_cached("UPDATE requests SET state = 'expired' WHERE id = ?1")?
            .execute([req.id])?;
        let at = if req.state == RequestState::Pending {
            req.pending_until
        } else {
            req.expires_at.unwrap_or(now)
        };
        append(
            conn,
            NewAuditEvent::new(now, "request.expired", "system")
                .request(req.id)
                .with("was", req.state)
                .with("due_at", at),
        )?;
        out.push(must_get(conn, req.id)?);
    }
    Ok(out)
}

pub(super) fn next_serial(conn: &Connection) -> Result<u64, StoreError> {
    let serial: u64 = conn
        .prepare_cached(
            "UPDATE counters SET value = value + 1 WHERE name = 'cert_serial' RETURNING value",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(serial)
}
