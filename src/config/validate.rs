//! The meaning checks of a parsed configuration: names that must exist, durations, keys,
//! regexes. `Validator` collects every error, located by key, and builds the types the rest
//! of jitgate uses.

use super::*;

/// The longest any duration setting may be: 100 years (`36500d`). Far past any sensible
/// value, and small enough that adding it to the clock, in seconds or as a `Duration`,
/// cannot overflow.
const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Whether a duration setting may be 0s.
#[derive(Clone, Copy)]
enum Zero {
    /// 0s means something (e.g. no grace at all).
    Allowed,
    /// Refused: why 0s makes no sense, and what to write instead.
    Refused(&'static str),
}

/// Guardrail sets and the file they came from (`None`: the main file; else path and text).
pub(super) type SetSource = (Option<(PathBuf, String)>, Vec<RawGuardrailSet>);

pub(super) struct Validator {
    file: PathBuf,
    pub(super) base: PathBuf,
    locator: Locator,
    pub(super) errors: Vec<ConfigError>,
}

impl Validator {
    pub(super) fn new(path: &Path, text: &str) -> Validator {
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

    pub(super) fn error(&mut self, key: &str, message: impl Into<String>) {
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

    /// The duration at `key`, `default` when absent (or wrong: the error is recorded).
    fn duration(
        &mut self,
        key: &str,
        text: Option<&str>,
        default: Duration,
        zero: Zero,
    ) -> Duration {
        text.and_then(|t| self.some_duration(key, t, zero))
            .unwrap_or(default)
    }

    /// Parses a duration setting and checks it is within bounds; `None` after an error.
    fn some_duration(&mut self, key: &str, text: &str, zero: Zero) -> Option<Duration> {
        let d = match parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                self.error(key, e);
                return None;
            }
        };
        if d > MAX_DURATION {
            self.error(
                key,
                format!("{text:?} is too long: write at most \"36500d\" (100 years)"),
            );
            return None;
        }
        if let (true, Zero::Refused(why)) = (d.is_zero(), zero) {
            self.error(key, format!("must be more than 0s: {why}"));
            return None;
        }
        Some(d)
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

    pub(super) fn config(&mut self, raw: RawConfig, guardrails: Vec<GuardrailSet>) -> Config {
        let server = self.server(&raw.server);
        let store = self.store(&raw.store, &server);
        let ca = Ca {
            // 0s: certificates are valid from the second they are signed.
            clock_skew: self.duration(
                "ca.clock_skew",
                raw.ca.clock_skew.as_deref(),
                Duration::from_secs(120),
                Zero::Allowed,
            ),
            upstream_cert_ttl: self.duration(
                "ca.upstream_cert_ttl",
                raw.ca.upstream_cert_ttl.as_deref(),
                Duration::from_secs(120),
                Zero::Refused(
                    "the bastion's certificate towards a target would expire as it is signed, \
                     so no session could reach a target; write e.g. \"2m\"",
                ),
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
            Zero::Refused("every request needing approval would expire at once; write e.g. \"1h\""),
        );
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
            // 0s: live sessions are closed at once, after their notice.
            shutdown_grace: self.duration(
                "server.shutdown_grace",
                raw.shutdown_grace.as_deref(),
                Duration::from_secs(10),
                Zero::Allowed,
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
        let retention = raw.retention.as_deref().and_then(|t| {
            self.some_duration(
                "recordings.retention",
                t,
                Zero::Refused(
                    "`jitgate recordings prune` would delete every closed recording; write \
                     e.g. \"365d\", or leave retention out to keep recordings",
                ),
            )
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
            Zero::Refused("no request could be granted any time; write e.g. \"15m\""),
        );
        let approvals = a.approvals.unwrap_or(0);
        if approvals > 0 && a.approvers.is_empty() {
            self.error(
                &format!("{at}.approvers"),
                format!("approvals = {approvals} needs approver roles"),
            );
        }
        // Approvers with `approvals` left out would have every request approved by policy:
        // whoever wrote the names expected them to be asked. Written out, `approvals = 0`
        // says so on purpose (the approvers may still see and revoke what was granted).
        if a.approvals.is_none() && !a.approvers.is_empty() {
            self.error(
                &format!("{at}.approvals"),
                "approvers are named but approvals is left out, so every request would be \
                 approved with no one asked; set approvals = N, or approvals = 0 to approve by \
                 policy and let the approvers see and revoke",
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
            approvals,
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
    pub(super) fn guardrails(&mut self, files: Vec<SetSource>) -> Vec<GuardrailSet> {
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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
