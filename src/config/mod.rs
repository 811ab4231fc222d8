//! TOML → validated `Config`. Errors name the file, line, column and key.
//!
//! Loading is two steps: serde reads the shape (`raw`, with `deny_unknown_fields`), then
//! `validate` checks meaning (names that must exist, durations, keys, regexes) and builds the
//! richer types the rest of jitgate uses. Every meaning error is reported, not just the first.

mod hours;
mod locate;
mod raw;
mod units;

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

/// Guardrail sets and the file they came from (`None`: the main file; else path and text).
type SetSource = (Option<(PathBuf, String)>, Vec<RawGuardrailSet>);

struct Validator {
    file: PathBuf,
    base: PathBuf,
    locator: Locator,
    errors: Vec<ConfigError>,
}

impl Validator {
    fn new(path: &Path, text: &str) -> Validator {
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Validator {
            file: path.to_path_buf(),
            base,
            locator: Locator::new(text),
            errors: Vec::new(),
        }
    }

    fn error(&mut self, key: &str, message: impl Into<String>) {
        let (line, column) = self.locator.position_of(key);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn path(&self, p: &str) -> PathBuf {
        self.base.join(p)
    }

    fn duration(&mut self, key: &str, text: Option<&str>, default: Duration) -> Duration {
        match text.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.error(key, e);
                default
            }
        }
    }

    fn socket(&mut self, key: &str, text: Option<&str>, default: &str) -> SocketAddr {
        let text = text.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.error(
                key,
                format!("{text:?} is not an address:port such as \"127.0.0.1:8722\""),
            );
            default.parse().expect("default address")
        })
    }

    fn public_key(&mut self, key: &str, text: &str) -> Option<PublicKey> {
        match PublicKey::from_openssh(text.trim()) {
            Ok(k) => Some(k),
            Err(e) => {
                self.error(
                    key,
                    format!("not an OpenSSH public key ({e}); paste one line of authorized_keys"),
                );
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig, guardrails: Vec<GuardrailSet>) -> Config {
        let server = self.server(&raw.server);
        let store = self.store(&raw.store, &server);
        let ca = Ca {
            clock_skew: self.duration(
                "ca.clock_skew",
                raw.ca.clock_skew.as_deref(),
                Duration::from_secs(120),
            ),
            upstream_cert_ttl: self.duration(
                "ca.upstream_cert_ttl",
                raw.ca.upstream_cert_ttl.as_deref(),
                Duration::from_secs(120),
            ),
        };
        let recordings = self.recordings(&raw.recordings);
        let hosts = self.hosts(&raw.hosts);
        let roles = self.roles(&raw.roles, &hosts, &guardrails);
        let users = self.users(&raw.users, &roles);
        let webhooks = self.webhooks(&raw.webhooks);
        Config {
            source: self.file.clone(),
            server,
            store,
            ca,
            recordings,
            hosts,
            users,
            roles,
            guardrails,
            webhooks,
        }
    }

    fn server(&mut self, raw: &RawServer) -> Server {
        if raw.hostname.trim().is_empty() {
            self.error(
                "server.hostname",
                "must name the bastion, e.g. \"bastion.example.com\"",
            );
        }
        let tls = match (&raw.tls_cert, &raw.tls_key) {
            (Some(c), Some(k)) => Some(Tls {
                cert: self.path(c),
                key: self.path(k),
            }),
            (None, None) => None,
            (Some(_), None) => {
                self.error("server.tls_cert", "tls_cert needs tls_key beside it");
                None
            }
            (None, Some(_)) => {
                self.error("server.tls_key", "tls_key needs tls_cert beside it");
                None
            }
        };
        let data_dir = self.path(&raw.data_dir);
        let pending_ttl = self.duration(
            "server.pending_ttl",
            raw.pending_ttl.as_deref(),
            Duration::from_secs(3600),
        );
        if pending_ttl.is_zero() {
            self.error(
                "server.pending_ttl",
                "must be more than 0s: every request needing approval would expire at once",
            );
        }
        Server {
            recordings_dir: raw
                .recordings_dir
                .as_deref()
                .map_or_else(|| data_dir.join("recordings"), |p| self.path(p)),
            data_dir,
            api_listen: self.socket(
                "server.api_listen",
                raw.api_listen.as_deref(),
                DEFAULT_API_LISTEN,
            ),
            ssh_listen: self.socket(
                "server.ssh_listen",
                raw.ssh_listen.as_deref(),
                DEFAULT_SSH_LISTEN,
            ),
            hostname: raw.hostname.trim().to_string(),
            tls,
            pending_ttl,
            shutdown_grace: self.duration(
                "server.shutdown_grace",
                raw.shutdown_grace.as_deref(),
                Duration::from_secs(10),
            ),
        }
    }

    fn store(&mut self, raw: &RawStore, server: &Server) -> StoreUrl {
        let Some(url) = &raw.url else {
            return StoreUrl::Sqlite(server.data_dir.join("jitgate.db"));
        };
        if let Some(p) = url.strip_prefix("sqlite://") {
            StoreUrl::Sqlite(self.path(p))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            self.error(
                "store.url",
                "PostgreSQL is not supported by this build yet; use sqlite://PATH",
            );
            StoreUrl::Sqlite(server.data_dir.join("jitgate.db"))
        } else {
            self.error("store.url", format!("{url:?}: expected sqlite://PATH"));
            StoreUrl::Sqlite(server.data_dir.join("jitgate.db"))
        }
    }

    fn recordings(&mut self, raw: &RawRecordings) -> Recordings {
        let retention = raw
            .retention
            .as_deref()
            .and_then(|t| match parse_duration(t) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error("recordings.retention", e);
                    None
                }
            });
        let max_exec_recording = match raw.max_exec_recording.as_deref().map(parse_size) {
            None => 64 << 20,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.error("recordings.max_exec_recording", e);
                64 << 20
            }
        };
        let mut mask: Vec<String> = if raw.default_masks.unwrap_or(true) {
            DEFAULT_MASKS.iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
        };
        for (i, m) in raw.mask.iter().enumerate() {
            match regex::Regex::new(m) {
                Ok(_) => mask.push(m.clone()),
                Err(e) => self.error(&format!("recordings.mask[{i}]"), format!("bad regex: {e}")),
            }
        }
        Recordings {
            retention,
            max_exec_recording,
            mask,
        }
    }

    fn hosts(&mut self, raw: &[RawHost]) -> Vec<Host> {
        let mut seen = HashSet::new();
        let mut hosts = Vec::new();
        for (i, h) in raw.iter().enumerate() {
            let at = format!("hosts[{i}]");
            if !valid_name(&h.name) {
                self.error(
                    &format!("{at}.name"),
                    format!(
                        "{:?} is not a host name (letters, digits, '.', '-', '_')",
                        h.name
                    ),
                );
            } else if !seen.insert(h.name.clone()) {
                self.error(
                    &format!("{at}.name"),
                    format!("host {:?} is defined twice", h.name),
                );
            }
            let address = if h.address.contains(':') {
                h.address.clone()
            } else {
                format!("{}:22", h.address)
            };
            if h.address.trim().is_empty() {
                self.error(
                    &format!("{at}.address"),
                    "must be host:port, e.g. \"10.0.0.5:22\"",
                );
            }
            let host_key = h
                .host_key
                .as_deref()
                .and_then(|k| self.public_key(&format!("{at}.host_key"), k));
            hosts.push(Host {
                name: h.name.clone(),
                address,
                labels: h.labels.clone(),
                host_key,
            });
        }
        hosts
    }

    fn users(&mut self, raw: &[RawUser], roles: &[Role]) -> Vec<User> {
        let mut seen = HashSet::new();
        let mut users = Vec::new();
        for (i, u) in raw.iter().enumerate() {
            let at = format!("users[{i}]");
            if !valid_name(&u.name) {
                self.error(
                    &format!("{at}.name"),
                    format!(
                        "{:?} is not a user name (letters, digits, '.', '-', '_')",
                        u.name
                    ),
                );
            } else if !seen.insert(u.name.clone()) {
                self.error(
                    &format!("{at}.name"),
                    format!("user {:?} is defined twice", u.name),
                );
            }
            for (j, r) in u.roles.iter().enumerate() {
                if !roles.iter().any(|role| &role.name == r) {
                    self.error(&format!("{at}.roles[{j}]"), format!("no role named {r:?}"));
                }
            }
            let keys = u
                .keys
                .iter()
                .enumerate()
                .filter_map(|(j, k)| self.public_key(&format!("{at}.keys[{j}]"), k))
                .collect();
            users.push(User {
                name: u.name.clone(),
                roles: u.roles.clone(),
                keys,
            });
        }
        // One key, one person: otherwise a signature could not say who made it.
        for (i, user) in users.iter().enumerate() {
            for (j, key) in user.keys.iter().enumerate() {
                let owner = users[..i]
                    .iter()
                    .find(|earlier| earlier.keys.iter().any(|k| k.key_data() == key.key_data()));
                if let Some(owner) = owner {
                    self.error(
                        &format!("users[{i}].keys[{j}]"),
                        format!(
                            "this key is already enrolled for {:?}; each key belongs to one user",
                            owner.name
                        ),
                    );
                }
            }
        }
        users
    }

    fn roles(&mut self, raw: &[RawRole], hosts: &[Host], sets: &[GuardrailSet]) -> Vec<Role> {
        let mut seen = HashSet::new();
        for (i, r) in raw.iter().enumerate() {
            if !seen.insert(r.name.clone()) {
                self.error(
                    &format!("roles[{i}].name"),
                    format!("role {:?} is defined twice", r.name),
                );
            }
        }
        let mut roles = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let access: Vec<AccessRule> = r
                .access
                .iter()
                .enumerate()
                .map(|(j, a)| self.access(&format!("roles[{i}].access[{j}]"), a, raw, hosts, sets))
                .collect();
            roles.push(Role {
                name: r.name.clone(),
                audit: r.audit,
                digests: access.iter().map(AccessRule::digest).collect(),
                access,
            });
        }
        roles
    }

    fn access(
        &mut self,
        at: &str,
        a: &RawAccess,
        roles: &[RawRole],
        hosts: &[Host],
        sets: &[GuardrailSet],
    ) -> AccessRule {
        let selector = match &a.hosts {
            RawHosts::Names(names) => {
                if names.is_empty() {
                    self.error(
                        &format!("{at}.hosts"),
                        "list at least one host, or [\"*\"] for every host",
                    );
                }
                for (k, n) in names.iter().enumerate() {
                    if n != "*" && !hosts.iter().any(|h| &h.name == n) {
                        self.error(
                            &format!("{at}.hosts[{k}]"),
                            format!("no host named {n:?} in [[hosts]]"),
                        );
                    }
                }
                HostSelector::Names(names.clone())
            }
            RawHosts::Labels(labels) => {
                // An empty table would match every host: say so instead of granting it.
                if labels.is_empty() {
                    self.error(
                        &format!("{at}.hosts"),
                        "an empty label table would match every host; name labels, e.g. \
                         { env = \"staging\" }, or write [\"*\"] for every host",
                    );
                }
                HostSelector::Labels(labels.clone())
            }
        };
        if a.logins.is_empty() {
            self.error(
                &format!("{at}.logins"),
                "list at least one login, e.g. [\"postgres\"]",
            );
        }
        let max_ttl = self.duration(
            &format!("{at}.max_ttl"),
            Some(&a.max_ttl),
            Duration::from_secs(900),
        );
        if max_ttl.is_zero() {
            self.error(&format!("{at}.max_ttl"), "must be more than 0s");
        }
        if a.approvals > 0 && a.approvers.is_empty() {
            self.error(
                &format!("{at}.approvers"),
                format!("approvals = {} needs approver roles", a.approvals),
            );
        }
        for (k, r) in a.approvers.iter().enumerate() {
            if !roles.iter().any(|role| &role.name == r) {
                self.error(
                    &format!("{at}.approvers[{k}]"),
                    format!("no role named {r:?}"),
                );
            }
        }
        for (k, g) in a.guardrails.iter().enumerate() {
            if !sets.iter().any(|s| &s.name == g) {
                self.error(
                    &format!("{at}.guardrails[{k}]"),
                    format!("no guardrail set named {g:?}"),
                );
            }
        }
        let hours = a.hours.as_deref().and_then(|h| match Hours::parse(h) {
            Ok(h) => Some(h),
            Err(e) => {
                self.error(&format!("{at}.hours"), e);
                None
            }
        });
        AccessRule {
            hosts: selector,
            logins: a.logins.clone(),
            max_ttl,
            approvals: a.approvals,
            approvers: a.approvers.clone(),
            guardrails: a.guardrails.clone(),
            require_reason: a.require_reason.unwrap_or(true),
            hours,
            allow_sftp: a.allow_sftp,
            allow_port_forwarding: a.allow_port_forwarding,
            allow_agent_forwarding: a.allow_agent_forwarding,
            allow_x11: a.allow_x11,
            allow_pty: a.allow_pty.unwrap_or(true),
            record_input: a.record_input,
            max_blocks: a.max_blocks.unwrap_or(3),
        }
    }

    /// Validates guardrail sets from the main file (`None`) and each included file.
    fn guardrails(&mut self, files: Vec<SetSource>) -> Vec<GuardrailSet> {
        let mut out: Vec<GuardrailSet> = Vec::new();
        for (file, sets) in files {
            // Errors in an included file name that file and its lines.
            let saved = file.map(|(path, text)| {
                (
                    std::mem::replace(&mut self.file, path),
                    std::mem::replace(&mut self.locator, Locator::new(&text)),
                )
            });
            for (i, s) in sets.into_iter().enumerate() {
                let at = format!("guardrails[{i}]");
                if out.iter().any(|o| o.name == s.name) {
                    self.error(
                        &format!("{at}.name"),
                        format!("guardrail set {:?} is defined twice", s.name),
                    );
                }
                let default = match s.default.as_deref() {
                    None | Some("allow") => SetDefault::Allow,
                    Some("block") => SetDefault::Block,
                    Some(other) => {
                        self.error(
                            &format!("{at}.default"),
                            format!("{other:?}: expected \"allow\" or \"block\""),
                        );
                        SetDefault::Allow
                    }
                };
                let mode = match s.mode.as_deref() {
                    None | Some("enforce") => SetMode::Enforce,
                    Some("shadow") => SetMode::Shadow,
                    Some(other) => {
                        self.error(
                            &format!("{at}.mode"),
                            format!("{other:?}: expected \"enforce\" or \"shadow\""),
                        );
                        SetMode::Enforce
                    }
                };
                let mut rules: Vec<GuardrailRule> = Vec::new();
                for (j, r) in s.rules.into_iter().enumerate() {
                    let rat = format!("{at}.rules[{j}]");
                    if rules.iter().any(|o| o.name == r.name) {
                        self.error(
                            &format!("{rat}.name"),
                            format!("rule {:?} is defined twice in set {:?}", r.name, s.name),
                        );
                    }
                    if let Err(e) = regex::Regex::new(&r.pattern) {
                        self.error(
                            &format!("{rat}.pattern"),
                            format!(
                                "guardrail {}/{}: bad regex: {}",
                                s.name,
                                r.name,
                                one_line(&e.to_string())
                            ),
                        );
                    }
                    let action = match r.action.as_str() {
                        "block" => Action::Block,
                        "warn" => Action::Warn,
                        "allow" => Action::Allow,
                        other => {
                            self.error(
                                &format!("{rat}.action"),
                                format!("{other:?}: expected \"block\", \"warn\" or \"allow\""),
                            );
                            Action::Block
                        }
                    };
                    let message = r
                        .message
                        .unwrap_or_else(|| format!("matches rule {:?}", r.name));
                    rules.push(GuardrailRule {
                        name: r.name,
                        pattern: r.pattern,
                        action,
                        message,
                    });
                }
                out.push(GuardrailSet {
                    name: s.name,
                    default,
                    mode,
                    rules,
                });
            }
            if let Some((file, locator)) = saved {
                self.file = file;
                self.locator = locator;
            }
        }
        out
    }

    fn webhooks(&mut self, raw: &[RawWebhook]) -> Vec<Webhook> {
        let mut out = Vec::new();
        for (i, w) in raw.iter().enumerate() {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                self.error(
                    &format!("webhooks[{i}].url"),
                    format!("{:?} is not an http(s) URL", w.url),
                );
            }
            for (j, e) in w.events.iter().enumerate() {
                if !WEBHOOK_EVENTS.contains(&e.as_str()) {
                    self.error(
                        &format!("webhooks[{i}].events[{j}]"),
                        format!("unknown event {e:?}; known: {}", WEBHOOK_EVENTS.join(", ")),
                    );
                }
            }
            out.push(Webhook {
                url: w.url.clone(),
                events: w.events.clone(),
            });
        }
        out
    }
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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
