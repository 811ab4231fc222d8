//! The configuration exactly as written in TOML: serde types with `deny_unknown_fields`.
//!
//! Nothing here is checked beyond its shape; `validate` turns these into `Config`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Further TOML files (relative to this one) whose `[[guardrails]]` sets are added.
    #[serde(default)]
    pub include: Vec<String>,
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub ca: RawCa,
    #[serde(default)]
    pub recordings: RawRecordings,
    #[serde(default)]
    pub hosts: Vec<RawHost>,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub roles: Vec<RawRole>,
    #[serde(default)]
    pub guardrails: Vec<RawGuardrailSet>,
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
}

/// An included file may only add guardrail sets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInclude {
    #[serde(default)]
    pub guardrails: Vec<RawGuardrailSet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub data_dir: String,
    pub recordings_dir: Option<String>,
    pub api_listen: Option<String>,
    pub ssh_listen: Option<String>,
    pub hostname: String,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub pending_ttl: Option<String>,
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCa {
    pub clock_skew: Option<String>,
    pub upstream_cert_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecordings {
    pub retention: Option<String>,
    pub max_exec_recording: Option<String>,
    #[serde(default)]
    pub mask: Vec<String>,
    pub default_masks: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub host_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    pub name: String,
    #[serde(default)]
    pub audit: bool,
    #[serde(default)]
    pub access: Vec<RawAccess>,
}

/// `hosts = ["db1", "db2"]` or `hosts = { env = "staging" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawHosts {
    Names(Vec<String>),
    Labels(BTreeMap<String, String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    pub hosts: RawHosts,
    pub logins: Vec<String>,
    pub max_ttl: String,
    /// Left out: 0, unless approvers are named (see `validate`).
    #[serde(default)]
    pub approvals: Option<u32>,
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub guardrails: Vec<String>,
    pub require_reason: Option<bool>,
    pub hours: Option<String>,
    #[serde(default)]
    pub allow_sftp: bool,
    #[serde(default)]
    pub allow_port_forwarding: bool,
    #[serde(default)]
    pub allow_agent_forwarding: bool,
    #[serde(default)]
    pub allow_x11: bool,
    pub allow_pty: Option<bool>,
    #[serde(default)]
    pub record_input: bool,
    pub max_blocks: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrailSet {
    pub name: String,
    pub default: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawGuardrailRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrailRule {
    pub name: String,
    pub pattern: String,
    pub action: String,
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    #[serde(default)]
    pub events: Vec<String>,
}
