//! Compiled guardrail sets and the verdict for one command.
//!
//! Each set compiles once into a `RegexSet` (one pass over the command answers "does any rule
//! match", and which) plus one `Regex` per rule (to show what matched). Commands are matched in
//! [`normalise`](super::normalise)d form.
//!
//! Within a set: any matching `block` rule blocks; else any matching `warn` rule warns; else a
//! matching `allow` rule allows; else the set's default decides (`default = "block"` makes the
//! set an allow list). A set in `mode = "shadow"` never blocks: what it would block is reported
//! as [`Verdict::WouldBlock`]. Across sets the strictest verdict wins (block > would-block >
//! warn > allow); on a tie, the first set named.

use std::fmt;
use std::sync::Arc;

use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::config::{Action, GuardrailSet, SetDefault, SetMode};

use super::normalise::normalise;

/// The name of the pseudo-rule that decides when nothing in an allow-list set matched.
pub const DEFAULT_RULE: &str = "default";

/// The compiled size of one `RegexSet`; a set of rules larger than this is split in shards.
const SIZE_LIMIT: usize = 16 << 20;
/// The lazy DFA cache of one shard.
const DFA_SIZE_LIMIT: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GuardrailError {
    #[error("guardrail {set}/{rule}: bad regex: {message}")]
    BadPattern {
        set: String,
        rule: String,
        message: String,
    },
    #[error("guardrail set {set}: {message}")]
    BadSet { set: String, message: String },
    #[error("no guardrail set named {0:?}")]
    UnknownSet(String),
}

/// Which rule decided, and what to tell the engineer. Shared (`Arc`), so a verdict is cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub set: String,
    /// The rule's name, or [`DEFAULT_RULE`] when an allow-list set matched nothing.
    pub rule: String,
    pub message: String,
    /// Position of the set in `Guardrails` and of the rule in the set (`None`: the default).
    set_index: usize,
    rule_index: Option<usize>,
}

impl Hit {
    /// `set/rule`, as audit records and messages name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.set, self.rule)
    }
}

/// The decision for one command. A value: blocking is not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Allowed, audited and alerted (`guardrail.warn`).
    Warn(Arc<Hit>),
    /// A set in shadow mode would have blocked this; it is allowed and reported.
    WouldBlock(Arc<Hit>),
    /// Must not run (`guardrail.block`).
    Block(Arc<Hit>),
}

impl Verdict {
    /// How strict: allow 0 < warn 1 < would-block 2 < block 3.
    pub fn rank(&self) -> u8 {
        match self {
            Verdict::Allow => 0,
            Verdict::Warn(_) => 1,
            Verdict::WouldBlock(_) => 2,
            Verdict::Block(_) => 3,
        }
    }

    pub fn is_blocked(&self) -> bool {
        matches!(self, Verdict::Block(_))
    }

    /// The word the audit index stores (`CommandRecord::verdict`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Allow => "allowed",
            Verdict::Warn(_) => "warned",
            Verdict::WouldBlock(_) => "would-block",
            Verdict::Block(_) => "blocked",
        }
    }

    /// The rule that decided, if any.
    pub fn hit(&self) -> Option<&Hit> {
        match self {
            Verdict::Allow => None,
            Verdict::Warn(h) | Verdict::WouldBlock(h) | Verdict::Block(h) => Some(h),
        }
    }

    /// `set/rule` of the deciding rule, if any (`CommandRecord::rule`).
    pub fn rule_id(&self) -> Option<String> {
        self.hit().map(Hit::id)
    }

    /// The stricter of two verdicts; `self` on a tie.
    pub fn max(self, other: Verdict) -> Verdict {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// The line shown to the engineer; for a block exactly
/// `jitgate: blocked by guardrail "<set>/<rule>": <message>`.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Allow => f.write_str("jitgate: allowed"),
            Verdict::Warn(h) => write!(
                f,
                "jitgate: warning from guardrail \"{}/{}\": {}",
                h.set, h.rule, h.message
            ),
            Verdict::WouldBlock(h) => write!(
                f,
                "jitgate: would be blocked by guardrail \"{}/{}\" (shadow mode): {}",
                h.set, h.rule, h.message
            ),
            Verdict::Block(h) => write!(
                f,
                "jitgate: blocked by guardrail \"{}/{}\": {}",
                h.set, h.rule, h.message
            ),
        }
    }
}

struct CompiledRule {
    action: Action,
    regex: Regex,
    hit: Arc<Hit>,
}

/// A `RegexSet` over the rules `first..first + set.len()` of a set.
struct Shard {
    first: usize,
    set: RegexSet,
}

/// Compiles `patterns` (rules from `first` on) into one `RegexSet`, or, when that exceeds the
/// regex size limit, into halves, recursively.
fn compile_shards(
    set_name: &str,
    patterns: &[&str],
    first: usize,
    out: &mut Vec<Shard>,
) -> Result<(), GuardrailError> {
    if patterns.is_empty() {
        return Ok(());
    }
    match RegexSetBuilder::new(patterns)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
    {
        Ok(set) => {
            out.push(Shard { first, set });
            Ok(())
        }
        Err(regex::Error::CompiledTooBig(_)) if patterns.len() > 1 => {
            let (a, b) = patterns.split_at(patterns.len() / 2);
            compile_shards(set_name, a, first, out)?;
            compile_shards(set_name, b, first + a.len(), out)
        }
        Err(e) => Err(GuardrailError::BadSet {
            set: set_name.to_string(),
            message: e.to_string(),
        }),
    }
}

struct CompiledSet {
    name: String,
    default: SetDefault,
    mode: SetMode,
    /// The rules' patterns in one `RegexSet`, or in several when one would be too large.
    shards: Vec<Shard>,
    rules: Vec<CompiledRule>,
    /// The hit reported when an allow-list set matched nothing.
    default_hit: Arc<Hit>,
}

impl CompiledSet {
    fn check(&self, command: &str) -> Verdict {
        let mut warn = None;
        let mut allowed = false;
        for shard in &self.shards {
            if !shard.set.is_match(command) {
                continue;
            }
            for i in shard.set.matches(command).iter() {
                let Some(rule) = self.rules.get(shard.first + i) else {
                    continue;
                };
                match rule.action {
                    Action::Block => return self.block(&rule.hit),
                    Action::Warn => {
                        if warn.is_none() {
                            warn = Some(&rule.hit);
                        }
                    }
                    Action::Allow => allowed = true,
                }
            }
        }
        if let Some(hit) = warn {
            return Verdict::Warn(Arc::clone(hit));
        }
        match (allowed, self.default) {
            (true, _) | (false, SetDefault::Allow) => Verdict::Allow,
            (false, SetDefault::Block) => self.block(&self.default_hit),
        }
    }

    fn block(&self, hit: &Arc<Hit>) -> Verdict {
        match self.mode {
            SetMode::Enforce => Verdict::Block(Arc::clone(hit)),
            SetMode::Shadow => Verdict::WouldBlock(Arc::clone(hit)),
        }
    }
}

/// A block decided by jitgate itself rather than a configured rule (set `jitgate`), e.g. for
/// input too large to check.
pub(crate) fn synthetic_block(rule: &str, message: &str) -> Verdict {
    Verdict::Block(Arc::new(Hit {
        set: "jitgate".to_string(),
        rule: rule.to_string(),
        message: message.to_string(),
        set_index: usize::MAX,
        rule_index: None,
    }))
}

/// Every configured guardrail set, compiled once at start.
pub struct Guardrails {
    sets: Vec<CompiledSet>,
}

impl fmt::Debug for Guardrails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.sets.iter().map(|s| &s.name))
            .finish()
    }
}

impl Guardrails {
    pub fn compile(sets: &[GuardrailSet]) -> Result<Guardrails, GuardrailError> {
        let mut out = Vec::with_capacity(sets.len());
        for (set_index, s) in sets.iter().enumerate() {
            let mut rules = Vec::with_capacity(s.rules.len());
            for (rule_index, r) in s.rules.iter().enumerate() {
                let regex = Regex::new(&r.pattern).map_err(|e| GuardrailError::BadPattern {
                    set: s.name.clone(),
                    rule: r.name.clone(),
                    message: e.to_string(),
                })?;
                rules.push(CompiledRule {
                    action: r.action,
                    regex,
                    hit: Arc::new(Hit {
                        set: s.name.clone(),
                        rule: r.name.clone(),
                        message: r.message.clone(),
                        set_index,
                        rule_index: Some(rule_index),
                    }),
                });
            }
            let patterns: Vec<&str> = s.rules.iter().map(|r| r.pattern.as_str()).collect();
            let mut shards = Vec::new();
            compile_shards(&s.name, &patterns, 0, &mut shards)?;
            out.push(CompiledSet {
                name: s.name.clone(),
                default: s.default,
                mode: s.mode,
                shards,
                rules,
                default_hit: Arc::new(Hit {
                    set: s.name.clone(),
                    rule: DEFAULT_RULE.to_string(),
                    message: format!("not on the allow list of guardrail set {:?}", s.name),
                    set_index,
                    rule_index: None,
                }),
            });
        }
        Ok(Guardrails { sets: out })
    }

    /// How many `RegexSet`s the sets compiled into (more than one per set when a set is large).
    pub fn shards(&self) -> usize {
        self.sets.iter().map(|s| s.shards.len()).sum()
    }

    /// The names of the compiled sets, in configuration order.
    pub fn set_names(&self) -> impl Iterator<Item = &str> {
        self.sets.iter().map(|s| s.name.as_str())
    }

    /// The verdict of the named sets on `command`. A name that is not a compiled set blocks
    /// (fail closed); sessions should resolve names once with [`Guardrails::checker`].
    pub fn check(&self, set_names: &[String], command: &str) -> Verdict {
        let mut indices = Vec::with_capacity(set_names.len());
        for name in set_names {
            match self.index(name) {
                Some(i) => indices.push(i),
                None => {
                    return Verdict::Block(Arc::new(Hit {
                        set: name.clone(),
                        rule: "unknown-set".to_string(),
                        message: "this guardrail set is not configured".to_string(),
                        set_index: usize::MAX,
                        rule_index: None,
                    }));
                }
            }
        }
        self.check_indices(&indices, command)
    }

    /// The checker for one session: the named sets resolved once.
    pub fn checker(self: &Arc<Self>, set_names: &[String]) -> Result<Checker, GuardrailError> {
        let mut sets = Vec::with_capacity(set_names.len());
        for name in set_names {
            let i = self
                .index(name)
                .ok_or_else(|| GuardrailError::UnknownSet(name.clone()))?;
            if !sets.contains(&i) {
                sets.push(i);
            }
        }
        Ok(Checker {
            rails: Arc::clone(self),
            sets: sets.into(),
        })
    }

    /// The text the deciding rule matched in `command`'s normal form (for reports).
    pub fn matched_text(&self, hit: &Hit, command: &str) -> Option<String> {
        let rule = self.sets.get(hit.set_index)?.rules.get(hit.rule_index?)?;
        let normal = normalise(command);
        rule.regex.find(&normal).map(|m| m.as_str().to_string())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.sets.iter().position(|s| s.name == name)
    }

    fn check_indices(&self, indices: &[usize], command: &str) -> Verdict {
        let normal = normalise(command);
        let mut verdict = Verdict::Allow;
        for &i in indices {
            let Some(set) = self.sets.get(i) else {
                continue;
            };
            verdict = verdict.max(set.check(&normal));
            if verdict.is_blocked() {
                break;
            }
        }
        verdict
    }
}

/// The guardrail sets of one access rule, ready to check commands. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Checker {
    rails: Arc<Guardrails>,
    sets: Arc<[usize]>,
}

impl Checker {
    /// The strictest verdict of this checker's sets on `command`. No sets: always allowed.
    pub fn check(&self, command: &str) -> Verdict {
        self.rails.check_indices(&self.sets, command)
    }

    pub fn guardrails(&self) -> &Arc<Guardrails> {
        &self.rails
    }
}
