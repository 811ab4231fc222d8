//! The handlers: one per endpoint, each checking policy, then changing the store, then
//! telling the hub. Refusals are audited.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::dto::*;
use super::error::ApiError;
use super::{AppState, Caller};
use crate::ca::{self, UserCertSpec};
use crate::config::parse_duration;
use crate::model::{NewAuditEvent, RequestState, now, unprintable};
use crate::policy::{self, Ask, Decision};
use crate::store::{ApproveOutcome, CommandFilter, RequestFilter, SessionFilter};

type ApiResult<T> = Result<T, ApiError>;

/// Free text one person types for others to read: bad input when it would redraw their
/// terminals (`model::unprintable`).
fn plain_text(what: &str, text: &str) -> ApiResult<()> {
    unprintable(what, text).map_or(Ok(()), |why| Err(ApiError::BadRequest(why)))
}

impl AppState {
    /// Records a refusal in the audit log and returns it as the error to send.
    async fn refuse(
        &self,
        caller: &str,
        kind: &str,
        request_id: Option<i64>,
        err: ApiError,
    ) -> ApiError {
        let mut event = NewAuditEvent::new(now(), kind, caller).with("reason", &err);
        event.request_id = request_id;
        if let Err(e) = self.store.append_audit(event).await {
            tracing::error!(error = %e, "could not audit a refusal");
        }
        err
    }

    async fn load(&self, caller: &Caller, id: i64) -> ApiResult<crate::model::AccessRequest> {
        match self.store.get_request(id).await? {
            Some(r) if policy::may_view(&self.cfg, &caller.user, &r) => Ok(r),
            // Not yours to see is answered like not there: ids are small and guessable.
            _ => Err(ApiError::NotFound(format!(
                "no request {id} visible to you"
            ))),
        }
    }

    /// `load` for a call that would act on the request: not finding it is a refusal like
    /// any other, audited as `kind` (someone tried to decide a request they cannot see).
    async fn load_to_act(
        &self,
        caller: &Caller,
        id: i64,
        kind: &str,
    ) -> ApiResult<crate::model::AccessRequest> {
        match self.load(caller, id).await {
            Err(e @ ApiError::NotFound(_)) => {
                Err(self.refuse(&caller.user, kind, Some(id), e).await)
            }
            other => other,
        }
    }
}

pub async fn create_request(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CreateRequest>,
) -> ApiResult<(StatusCode, Json<RequestView>)> {
    let now = now();
    let ttl = parse_duration(&body.ttl).map_err(ApiError::BadRequest)?;
    plain_text("reason", &body.reason)?;
    let ask = Ask {
        user: &caller.user,
        host: &body.host,
        login: &body.login,
        ttl,
        reason: &body.reason,
    };
    let decision = policy::evaluate(&app.cfg, &ask, now);
    if let Decision::Deny { reason } = &decision {
        app.metrics.request("refused");
        let event = NewAuditEvent::new(now, "request.refused", &caller.user)
            .with("host", &body.host)
            .with("login", &body.login)
            .with("ttl", &body.ttl)
            .with("reason", reason);
        app.store.append_audit(event).await?;
        return Err(ApiError::Forbidden(reason.clone()));
    }
    let new = decision
        .into_request(&app.cfg, &ask, now)
        .expect("not a denial");
    let req = app.store.create_request(new).await?;
    let state = req.state_at(now);
    app.metrics.request(state.as_str());
    app.hub
        .emit("request.created", Some(req.id), request_data(&req));
    if state == RequestState::Approved {
        app.hub
            .emit("request.approved", Some(req.id), request_data(&req));
    }
    tracing::info!(request = req.id, user = %caller.user, host = %req.host, login = %req.login, state = %state, "request created");
    Ok((
        StatusCode::CREATED,
        Json(RequestView::of(&app.cfg, &req, now)),
    ))
}

pub async fn list_requests(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<RequestView>>> {
    // The newest `SHOWN` the caller may see, read a page at a time: requests others may not
    // see must not push the caller's own off the list.
    const SHOWN: usize = 500;
    let now = now();
    let mut shown = Vec::new();
    let mut before_id = None;
    loop {
        let filter = RequestFilter {
            pending_at: q.pending.then_some(now),
            requester: q.user.clone(),
            before_id,
            limit: Some(SHOWN as u32),
        };
        let page = app.store.list_requests(filter).await?;
        let last = page.last().map(|r| r.id);
        shown.extend(
            page.iter()
                .filter(|r| policy::may_view(&app.cfg, &caller.user, r))
                .map(|r| RequestView::of(&app.cfg, r, now)),
        );
        match last {
            Some(id) if shown.len() < SHOWN && page.len() == SHOWN => before_id = Some(id),
            _ => break,
        }
    }
    shown.truncate(SHOWN);
    Ok(Json(shown))
}

pub async fn show_request(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<Json<RequestView>> {
    let req = app.load(&caller, id).await?;
    Ok(Json(RequestView::of(&app.cfg, &req, now())))
}

pub async fn approve(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Json(body): Json<DecisionBody>,
) -> ApiResult<Json<RequestView>> {
    let now = now();
    let req = app.load_to_act(&caller, id, "approval.refused").await?;
    if let Some(comment) = &body.comment {
        plain_text("comment", comment)?;
    }
    let counted = match policy::check_approver(&app.cfg, &caller.user, &req, now) {
        Ok(rule) => policy::current_approvers(&app.cfg, rule, &req),
        Err(reason) => {
            let err = decider_error(&req, now, reason);
            return Err(app
                .refuse(&caller.user, "approval.refused", Some(id), err)
                .await);
        }
    };
    match app
        .store
        .approve(id, &caller.user, body.comment.as_deref(), &counted, now)
        .await
    {
        Ok(ApproveOutcome::Counted(r)) => {
            // Each approval, as the audit log has it; then the approval that decided it.
            let mut data = request_data(&r);
            data.insert("approver".into(), caller.user.clone());
            let counting = policy::approvals_counted(&app.cfg, &r);
            data.insert(
                "approvals".into(),
                format!("{counting} of {}", r.approvals_needed),
            );
            app.hub.emit("request.approval", Some(id), data);
            if r.state == RequestState::Approved {
                app.metrics.request("approved");
                app.hub.emit("request.approved", Some(id), request_data(&r));
            }
            tracing::info!(request = id, approver = %caller.user, state = %r.state, "approval recorded");
            Ok(Json(RequestView::of(&app.cfg, &r, now)))
        }
        Ok(ApproveOutcome::AlreadyApproved(r)) => {
            let needed = (r.approvals_needed as usize)
                .saturating_sub(policy::approvals_counted(&app.cfg, &r));
            let err = ApiError::Conflict(format!(
                "you already approved request {id}; it needs {needed} more approval(s) from someone else"
            ));
            Err(app
                .refuse(&caller.user, "approval.refused", Some(id), err)
                .await)
        }
        Err(e) => {
            let err = ApiError::from(e);
            Err(app
                .refuse(&caller.user, "approval.refused", Some(id), err)
                .await)
        }
    }
}

pub async fn deny(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Json(body): Json<DecisionBody>,
) -> ApiResult<Json<RequestView>> {
    let now = now();
    let reason = body.reason.unwrap_or_default();
    if reason.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "a reason is required: --reason \"why\"".into(),
        ));
    }
    plain_text("reason", &reason)?;
    let req = app.load_to_act(&caller, id, "denial.refused").await?;
    if let Err(why) = policy::check_decider(&app.cfg, &caller.user, &req, now) {
        let err = decider_error(&req, now, why);
        return Err(app
            .refuse(&caller.user, "denial.refused", Some(id), err)
            .await);
    }
    let r = match app.store.deny(id, &caller.user, reason.trim(), now).await {
        Ok(r) => r,
        Err(e) => {
            return Err(app
                .refuse(&caller.user, "denial.refused", Some(id), e.into())
                .await);
        }
    };
    app.metrics.request("denied");
    app.hub.emit("request.denied", Some(id), request_data(&r));
    Ok(Json(RequestView::of(&app.cfg, &r, now)))
}

pub async fn revoke(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Json(body): Json<DecisionBody>,
) -> ApiResult<Json<RequestView>> {
    let now = now();
    let reason = body.reason.unwrap_or_else(|| "revoked".into());
    plain_text("reason", &reason)?;
    let req = app.load_to_act(&caller, id, "revocation.refused").await?;
    if let Err(why) = policy::check_revoker(&app.cfg, &caller.user, &req, now) {
        let err = if req.state_at(now) == RequestState::Pending
            || req.state_at(now) == RequestState::Approved
        {
            ApiError::Forbidden(why)
        } else {
            ApiError::Conflict(why)
        };
        return Err(app
            .refuse(&caller.user, "revocation.refused", Some(id), err)
            .await);
    }
    let r = match app
        .store
        .revoke(id, &caller.user, reason.trim(), false, now)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return Err(app
                .refuse(&caller.user, "revocation.refused", Some(id), e.into())
                .await);
        }
    };
    app.hub.end_access(id);
    app.metrics.request("revoked");
    app.hub.emit("request.revoked", Some(id), request_data(&r));
    tracing::info!(request = id, by = %caller.user, "request revoked");
    Ok(Json(RequestView::of(&app.cfg, &r, now)))
}

/// Signs a certificate for the key that signed this call, for an approved request.
pub async fn certificate(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<Json<CertificateView>> {
    let now = now();
    let req = app.load_to_act(&caller, id, "certificate.refused").await?;
    if req.requester != caller.user {
        let err = ApiError::Forbidden(format!(
            "request {id} is {}'s; only the requester gets its certificate",
            req.requester
        ));
        return Err(app
            .refuse(&caller.user, "certificate.refused", Some(id), err)
            .await);
    }
    let state = req.state_at(now);
    if state != RequestState::Approved {
        let why = match state {
            RequestState::Pending => format!(
                "request {id} is still pending ({} of {} approvals); wait with jitgate show {id}, or ask an approver",
                policy::approvals_counted(&app.cfg, &req),
                req.approvals_needed
            ),
            s => policy::already_decided(&req, s, true),
        };
        return Err(app
            .refuse(
                &caller.user,
                "certificate.refused",
                Some(id),
                ApiError::Conflict(why),
            )
            .await);
    }
    let rule = match policy::rule_of(&app.cfg, &req) {
        Ok(rule) => rule,
        Err(why) => {
            let err = ApiError::Conflict(why);
            return Err(app
                .refuse(&caller.user, "certificate.refused", Some(id), err)
                .await);
        }
    };
    let mut extensions = Vec::new();
    if rule.allow_pty {
        extensions.push(ca::EXT_PTY);
    }
    if rule.allow_port_forwarding {
        extensions.push(ca::EXT_PORT_FORWARDING);
    }
    if rule.allow_agent_forwarding {
        extensions.push(ca::EXT_AGENT_FORWARDING);
    }
    if rule.allow_x11 {
        extensions.push(ca::EXT_X11_FORWARDING);
    }
    // Outside the rule's allowed hours nothing is signed; inside them the certificate ends
    // with them (the bastion closes sessions then too).
    let hours_end = match policy::hours_end(rule, &req.host, &req.login, now) {
        Ok(end) => end,
        Err(why) => {
            let err = ApiError::Forbidden(format!("{why}; request {id} can be used then"));
            return Err(app
                .refuse(&caller.user, "certificate.refused", Some(id), err)
                .await);
        }
    };
    let serial = app.store.next_serial().await?;
    // The config bounds the skew; saturating all the same, so no value can wrap the clock.
    let skew = i64::try_from(app.cfg.ca.clock_skew.as_secs()).unwrap_or(i64::MAX);
    let valid_after = now.saturating_sub(skew);
    let valid_before = req.expires_at.unwrap_or(now);
    let valid_before = hours_end.map_or(valid_before, |h| h.min(valid_before));
    let spec = UserCertSpec {
        key: &caller.key,
        serial,
        request_id: id,
        user: &caller.user,
        valid_after: valid_after.max(0) as u64,
        valid_before: valid_before.max(0) as u64,
        extensions: &extensions,
    };
    let cert = app
        .ca
        .sign_user(&spec)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let line = cert
        .to_openssh()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    app.store
        .record_cert(crate::model::IssuedCert {
            serial,
            request_id: id,
            user: caller.user.clone(),
            key_fingerprint: caller.key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
            valid_after,
            valid_before,
            issued_at: now,
        })
        .await?;
    app.metrics.certificate();
    tracing::info!(request = id, user = %caller.user, serial, "certificate issued");
    Ok(Json(CertificateView {
        request_id: id,
        serial,
        certificate: line,
        principal: caller.user.clone(),
        valid_after,
        valid_before,
        host: req.host.clone(),
        login: req.login.clone(),
        bastion: app.bastion_info(&caller.user),
    }))
}

pub async fn bastion(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Json<BastionInfo> {
    Json(app.bastion_info(&caller.user))
}

pub async fn audit(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<AuditEventView>>> {
    app.require_auditor(&caller, "the audit log").await?;
    let events = app.store.audit_events(q.since).await?;
    Ok(Json(events.iter().map(AuditEventView::from).collect()))
}

pub async fn sessions(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<SessionView>>> {
    let list = app
        .store
        .list_sessions(SessionFilter {
            user: app.user_filter(&caller, q.user),
            host: q.host,
            since: q.since,
            ..SessionFilter::default()
        })
        .await?;
    Ok(Json(list.iter().map(SessionView::from).collect()))
}

pub async fn recording(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let session = app
        .store
        .get_session(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))?;
    if session.user != caller.user {
        app.require_auditor(&caller, "other people's recordings")
            .await?;
    }
    let rel = session
        .recording
        .ok_or_else(|| ApiError::NotFound(format!("session {id} has no recording")))?;
    let path = crate::recorder::locate(&app.cfg.server.recordings_dir, &rel).map_err(|e| {
        tracing::error!(session = %id, error = %e, "refusing a stored recording path");
        ApiError::NotFound(format!("session {id}'s recording path is not valid"))
    })?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::NotFound(format!("recording {rel}: {e}")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-asciicast")],
        Body::from(bytes),
    )
        .into_response())
}

pub async fn commands(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<CommandView>>> {
    let list = app
        .store
        .list_commands(CommandFilter {
            user: app.user_filter(&caller, q.user),
            host: q.host,
            since: q.since,
            ..CommandFilter::default()
        })
        .await?;
    Ok(Json(
        list.iter().map(|(c, s)| CommandView::new(c, s)).collect(),
    ))
}

impl AppState {
    /// Engineers see their own sessions and commands; auditors see everyone's.
    fn user_filter(&self, caller: &Caller, asked: Option<String>) -> Option<String> {
        if policy::is_auditor(&self.cfg, &caller.user) {
            asked
        } else {
            Some(caller.user.clone())
        }
    }

    async fn require_auditor(&self, caller: &Caller, what: &str) -> ApiResult<()> {
        if policy::is_auditor(&self.cfg, &caller.user) {
            return Ok(());
        }
        let err = ApiError::Forbidden(format!("only auditors may read {what}"));
        Err(self.refuse(&caller.user, "api.refused", None, err).await)
    }

    fn bastion_info(&self, user: &str) -> BastionInfo {
        BastionInfo {
            hostname: self.cfg.server.hostname.clone(),
            ssh_port: self.cfg.server.ssh_listen.port(),
            known_hosts_line: self.ca.known_hosts_line(),
            hosts: self.cfg.hosts.iter().map(|h| h.name.clone()).collect(),
            user: user.to_string(),
        }
    }
}

fn decider_error(req: &crate::model::AccessRequest, now: i64, reason: String) -> ApiError {
    match req.state_at(now) {
        RequestState::Pending => ApiError::Forbidden(reason),
        _ => ApiError::Conflict(reason),
    }
}

/// The fields every `request.*` webhook event carries.
pub(super) fn request_data(
    r: &crate::model::AccessRequest,
) -> std::collections::BTreeMap<String, String> {
    [
        ("requester", r.requester.clone()),
        ("host", r.host.clone()),
        ("login", r.login.clone()),
        ("reason", r.reason.clone()),
        ("state", r.state.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
