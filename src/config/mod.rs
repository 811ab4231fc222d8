//! TOML → validated `Config`. Errors name the file, line, column and key.
//!
//! Loading is two steps: serde reads the shape (`raw`, with `deny_unknown_fields`), then
//! `validate` checks meaning (names that must exist, durations, keys, regexes) and builds the
//! richer types the rest of jitgate uses. Every meaning error is reported, not just the first.

mod hours;
mod locate;
mod raw;
mod units;
mod validate;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use hours::Hours;
pub use units::{format_duration, parse_duration, parse_size};

use locate::Locator;
use raw::*;
use ssh_key::PublicKey;
use validate::Validator;

pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8722";
pub const DEFAULT_SSH_LISTEN: &str = "127.0.0.1:2222";

/// The webhook events jitgate emits; `[[webhooks]] events` may name only these.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "request.created",
    "request.approval",
    "request.approved",
    "request.denied",
    "request.revoked",
    "request.expired",
    "request.flagged",
    "guardrail.warn",
    "guardrail.block",
];

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from.
    pub source: PathBuf,
    pub server: Server,
    pub store: StoreUrl,
    pub ca: Ca,
    pub recordings: Recordings,
    pub hosts: Vec<Host>,
    pub users: Vec<User>,
    pub roles: Vec<Role>,
    pub guardrails: Vec<GuardrailSet>,
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub data_dir: PathBuf,
    pub recordings_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub ssh_listen: SocketAddr,
    pub hostname: String,
    pub tls: Option<Tls>,
    /// An undecided request expires this long after it was made.
    pub pending_ttl: Duration,
    /// On SIGTERM, live sessions get this long before they are closed.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Ca {
    /// Certificates are valid from now minus this, for clocks that lag.
    pub clock_skew: Duration,
    /// Lifetime of the certificates the bastion mints for itself towards a target.
    pub upstream_cert_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Recordings {
    pub retention: Option<Duration>,
    pub max_exec_recording: u64,
    /// Regexes whose matches are masked in recorded output (defaults included unless disabled).
    pub mask: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// `host:port` to dial.
    pub address: String,
    pub labels: BTreeMap<String, String>,
    /// The target's pinned host key; without it, only a host-CA certificate is trusted.
    pub host_key: Option<PublicKey>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
    pub keys: Vec<PublicKey>,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    /// Auditors see every request, session and audit event.
    pub audit: bool,
    pub access: Vec<AccessRule>,
    /// `access[i].digest()`, computed once at load: requests are matched to rules by it on
    /// every approval, certificate, connection and listing.
    digests: Vec<String>,
}

impl Role {
    /// Each access rule with the reference a request keeps to it.
    pub fn rules(&self) -> impl Iterator<Item = (RuleRef, &AccessRule)> {
        self.access
            .iter()
            .zip(&self.digests)
            .enumerate()
            .map(|(index, (rule, digest))| {
                let r = RuleRef {
                    role: self.name.clone(),
                    index,
                    digest: digest.clone(),
                };
                (r, rule)
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSelector {
    Names(Vec<String>),
    Labels(BTreeMap<String, String>),
}

impl HostSelector {
    pub fn matches(&self, host: &Host) -> bool {
        match self {
            HostSelector::Names(names) => names.iter().any(|n| n == "*" || n == &host.name),
            HostSelector::Labels(want) => want
                .iter()
                .all(|(k, v)| host.labels.get(k).is_some_and(|have| have == v)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AccessRule {
    pub hosts: HostSelector,
    pub logins: Vec<String>,
    pub max_ttl: Duration,
    /// 0: approved by policy at once.
    pub approvals: u32,
    pub approvers: Vec<String>,
    pub guardrails: Vec<String>,
    pub require_reason: bool,
    pub hours: Option<Hours>,
    pub allow_sftp: bool,
    pub allow_port_forwarding: bool,
    pub allow_agent_forwarding: bool,
    pub allow_x11: bool,
    pub allow_pty: bool,
    pub record_input: bool,
    /// Blocks in one session before it is closed and the request flagged.
    pub max_blocks: u32,
}

impl AccessRule {
    /// For tests: any host, as root, for a minute, approved at once, nothing allowed beyond
    /// a plain session (no pty, sftp, forwarding, agent or X11).
    #[cfg(test)]
    pub(crate) fn bare() -> AccessRule {
        AccessRule {
            hosts: HostSelector::Names(vec!["*".into()]),
            logins: vec!["root".into()],
            max_ttl: Duration::from_secs(60),
            approvals: 0,
            approvers: vec![],
            guardrails: vec![],
            require_reason: false,
            hours: None,
            allow_sftp: false,
            allow_port_forwarding: false,
            allow_agent_forwarding: false,
            allow_x11: false,
            allow_pty: false,
            record_input: false,
            max_blocks: 3,
        }
    }

    /// A fingerprint of everything the rule says (hex SHA-256 of its `Debug` form, which
    /// lists every field, so a field added later cannot be left out).
    ///
    /// A request keeps the fingerprint of the rule that admitted it. Editing that rule, or
    /// moving another rule into its place, then leaves the request without a rule instead of
    /// putting it under different approvers, scope or forwarding.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(format!("{self:?}").as_bytes()))
    }
}

/// A rule names the access rule it came from: role name, index in `[[roles.access]]` (for
/// people) and the rule's [`AccessRule::digest`] (what binds the request to it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleRef {
    pub role: String,
    pub index: usize,
    pub digest: String,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/access[{}]", self.role, self.index)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetDefault {
    Allow,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    Enforce,
    Shadow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Block,
    Warn,
    Allow,
}

#[derive(Debug, Clone)]
pub struct GuardrailSet {
    pub name: String,
    pub default: SetDefault,
    pub mode: SetMode,
    pub rules: Vec<GuardrailRule>,
}

#[derive(Debug, Clone)]
pub struct GuardrailRule {
    pub name: String,
    pub pattern: String,
    pub action: Action,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    /// Empty: every event.
    pub events: Vec<String>,
}

impl Webhook {
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }
}

impl Config {
    /// Reads and validates the file at `path`, with its includes.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::from_str(&text, path)
    }

    /// Validates `text` as if read from `path` (relative paths resolve against its folder).
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut raw: RawConfig = parse(text, path)?;
        let mut v = Validator::new(path, text);
        let mut sets = Vec::new();
        for (i, inc) in raw.include.iter().enumerate() {
            let inc_path = v.base.join(inc);
            match std::fs::read_to_string(&inc_path) {
                Ok(inc_text) => match parse::<RawInclude>(&inc_text, &inc_path) {
                    Ok(r) => sets.push((Some((inc_path.clone(), inc_text)), r.guardrails)),
                    Err(errs) => v.errors.extend(errs.0),
                },
                Err(e) => v.error(
                    &format!("include[{i}]"),
                    format!("cannot read {}: {e}", inc_path.display()),
                ),
            }
        }
        sets.insert(0, (None, std::mem::take(&mut raw.guardrails)));
        let guardrails = v.guardrails(sets);
        let config = v.config(raw, guardrails);
        if v.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(v.errors))
        }
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// The rule a request was admitted under, if it is still configured word for word: at
    /// its old place in the role, or elsewhere in the role when other rules were added or
    /// removed around it. A rule that was edited is gone.
    pub fn rule(&self, r: &RuleRef) -> Option<&AccessRule> {
        let role = self.role(&r.role)?;
        let at = if role.digests.get(r.index) == Some(&r.digest) {
            r.index
        } else {
            role.digests.iter().position(|d| *d == r.digest)?
        };
        role.access.get(at)
    }

    /// The reference a new request keeps to rule `index` of `role`.
    pub fn rule_ref(&self, role: &str, index: usize) -> Option<RuleRef> {
        self.role(role)?.rules().nth(index).map(|(r, _)| r)
    }

    pub fn guardrail_set(&self, name: &str) -> Option<&GuardrailSet> {
        self.guardrails.iter().find(|s| s.name == name)
    }

    /// The user whose enrolled keys include `key` (compared by key data, not comment).
    pub fn user_by_key(&self, key: &PublicKey) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.keys.iter().any(|k| k.key_data() == key.key_data()))
    }

    /// Whether `user` holds a role marked `audit = true`.
    pub fn is_auditor(&self, user: &User) -> bool {
        user.roles
            .iter()
            .any(|r| self.role(r).is_some_and(|role| role.audit))
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.server.data_dir.join("ca")
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The key path, e.g. `roles[1].access[0].max_ttl`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads the shape of a TOML file; the first shape error is located by its span.
fn parse<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigErrors> {
    toml::from_str(text).map_err(|e| {
        let loc = Locator::new(text);
        let offset = e.span().map_or(0, |s| s.start);
        let (line, column) = loc.line_col(offset);
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            key: loc.path_at(offset).unwrap_or_default().to_string(),
            message: e.message().trim().to_string(),
        }])
    })
}

/// Secrets masked in recordings unless `recordings.default_masks = false`.
///
/// Word boundaries are ASCII (`(?-u:\b)`): each sits next to an ASCII letter or digit of the
/// pattern, so it matches wherever a Unicode one would (and also beside a non-ASCII letter,
/// masking more), and the recorder searches about half again as fast.
pub const DEFAULT_MASKS: &[&str] = &[
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"(?-u:\b)(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)",
    r"(?i)(?-u:\b)bearer\s+[A-Za-z0-9._~+/=-]{8,}",
    // `password=x`, `DB_PASSWORD=x`, `"password": "x y"`, `pwd: x`; never across a line end
    // (a `Password:` prompt does not mask the next line). `PGPASSWORD=x` has a pattern of its
    // own: with `pg` as a third way in, the regex's literal prefilter gives out and it scans
    // a shell's directory listing seven times slower (`pass(?:word|wd)` rather than
    // `password|passwd` for the same reason).
    r#"(?i)(?:(?-u:\b)|_)(?:pass(?:word|wd)|pwd)["']?[ \t]*[=:][ \t]*(?:"[^"\r\n]*"|'[^'\r\n]*'|\S+)"#,
    r#"(?i)pg(?:pass(?:word|wd)|pwd)["']?[ \t]*[=:][ \t]*(?:"[^"\r\n]*"|'[^'\r\n]*'|\S+)"#,
    // `mysql -u root -pSECRET` (and mysqldump, mysqladmin): the password only.
    r"(?-u:\b)mysql[a-z]*[ \t][^\r\n]*?[ \t]-p(?P<secret>[^\s-]\S*)",
];

#[cfg(test)]
mod tests;
