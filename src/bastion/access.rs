//! Who may pass: the checks on an engineer's certificate, its issue record and its request.
//!
//! `check` is pure (time passed in); the handlers gather the facts from the certificate, the
//! CA and the store, then act on the decision. A refusal is a value carrying the reason that
//! is logged and audited, never shown in detail to an unauthenticated client.

use std::fmt;

use ssh_key::Certificate;

use crate::config::{AccessRule, Config, Host};
use crate::model::{AccessRequest, IssuedCert, RequestState, UnixTime};

/// Why a connection, login or channel was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse<T>(reason: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(reason.into()))
}

/// What an accepted certificate opens: one request's host and login, until `until`.
#[derive(Debug, Clone)]
pub struct Grant {
    pub user: String,
    pub request: AccessRequest,
    pub rule: AccessRule,
    pub host: Host,
    /// The certificate's serial.
    pub serial: u64,
    /// Access ends at the earliest of the certificate's end, the request's and the end of
    /// the rule's allowed hours.
    pub until: UnixTime,
    /// The allowed hours are what ends it.
    pub until_hours: bool,
}

impl Grant {
    /// The notice a session gets when `until` comes.
    pub fn end_notice(&self) -> String {
        let at = crate::model::format_time(self.until);
        match (&self.rule.hours, self.until_hours) {
            (Some(hours), true) => format!(
                "access through request {} is allowed only {hours}; it ended at {at}; closing",
                self.request.id
            ),
            _ => format!(
                "access through request {} ended at {at}; closing",
                self.request.id
            ),
        }
    }
}

/// What the checks need from a certificate, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub serial: u64,
    pub principals: Vec<String>,
    pub request_id: Option<i64>,
    pub valid_before: u64,
}

impl CertFacts {
    pub fn of(cert: &Certificate) -> CertFacts {
        CertFacts {
            serial: cert.serial(),
            principals: cert.valid_principals().to_vec(),
            request_id: crate::ca::request_id_of(cert),
            valid_before: cert.valid_before(),
        }
    }
}

/// Decides whether `user` may pass with a certificate the user CA has already validated.
pub fn check(
    config: &Config,
    user: &str,
    cert: &CertFacts,
    issued: Option<&IssuedCert>,
    request: Option<&AccessRequest>,
    now: UnixTime,
) -> Result<Grant, Refusal> {
    if !cert.principals.iter().any(|p| p == user) {
        return refuse(format!(
            "certificate principals {:?} do not include {user:?}",
            cert.principals
        ));
    }
    let Some(request_id) = cert.request_id else {
        return refuse("certificate names no request");
    };
    let Some(issued) = issued else {
        return refuse(format!(
            "certificate serial {} was not issued by this jitgate",
            cert.serial
        ));
    };
    if issued.request_id != request_id || issued.user != user {
        return refuse(format!(
            "certificate serial {} was issued to {} for request {}",
            cert.serial, issued.user, issued.request_id
        ));
    }
    let Some(request) = request else {
        return refuse(format!("no request {request_id}"));
    };
    if request.id != request_id || request.requester != user {
        return refuse(format!(
            "request {request_id} belongs to {}",
            request.requester
        ));
    }
    if !request.is_active(now) {
        return refuse(match request.state_at(now) {
            RequestState::Pending => format!(
                "request {request_id} is still pending approval; see jitgate show {request_id}"
            ),
            RequestState::Expired => {
                crate::policy::already_decided(request, RequestState::Expired, true)
            }
            state => format!(
                "request {request_id} was {state}; run jitgate request --host {} --login {} for new access",
                request.host, request.login
            ),
        });
    }
    let rule = crate::policy::rule_of(config, request).map_err(Refusal)?;
    let Some(host) = config.host(&request.host) else {
        return refuse(format!(
            "request {request_id}'s host {} is no longer in the inventory",
            request.host
        ));
    };
    if !rule.hosts.matches(host) {
        return refuse(format!(
            "request {request_id}'s host {} is no longer covered by its rule {}",
            request.host, request.rule
        ));
    }
    let hours_end = crate::policy::hours_end(rule, &request.host, &request.login, now)
        .map_err(|why| Refusal(format!("{why} (request {request_id})")))?;
    let cert_end = i64::try_from(cert.valid_before).unwrap_or(i64::MAX);
    let until = request.expires_at.map_or(cert_end, |e| e.min(cert_end));
    let until_hours = hours_end.is_some_and(|h| h < until);
    Ok(Grant {
        user: user.to_string(),
        request: request.clone(),
        rule: rule.clone(),
        host: host.clone(),
        serial: cert.serial,
        until: hours_end.map_or(until, |h| h.min(until)),
        until_hours,
    })
}

/// Whether a `direct-tcpip` to `host:port` stays inside the grant: the request's inventory
/// host, on port 22 or the port of its inventory address.
pub fn check_target(grant: &Grant, host: &str, port: u32) -> Result<(), Refusal> {
    if host != grant.host.name {
        return refuse(format!(
            "{host} is not in request {}'s scope ({})",
            grant.request.id, grant.host.name
        ));
    }
    check_port(&grant.host, port)
}

/// Whether `port` names the SSH port of `host`: 22, or the port of its inventory address.
pub fn check_port(host: &Host, port: u32) -> Result<(), Refusal> {
    let inventory_port = host
        .address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u32>().ok());
    if port != 22 && Some(port) != inventory_port {
        return refuse(format!("port {port} of {} is not an SSH port", host.name));
    }
    Ok(())
}

/// Whether the inner login as `login` to `host`, with a certificate that gave `grant`, is
/// the approved login of a request for that host. The inner certificate may be another of
/// the same engineer's certificates: one jump connection can reach each host the engineer
/// holds a request for.
pub fn check_login(grant: &Grant, host: &str, login: &str) -> Result<(), Refusal> {
    if grant.host.name != host {
        return refuse(format!(
            "the certificate's request {} is for {}, not {host}",
            grant.request.id, grant.host.name
        ));
    }
    if login != grant.request.login {
        return refuse(format!(
            "login {login:?} is not the approved login {:?} of request {}",
            grant.request.login, grant.request.id
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
