//! Tests of the guardrail module: engine semantics, the shipped `destructive` set, the pty and
//! line gates with synthetic byte streams, and a seeded robustness run.

mod destructive;
mod engine;
mod fuzz;
mod lines;
mod pty;
mod pty_edges;

use std::path::Path;
use std::sync::Arc;

use crate::config::{Action, Config, GuardrailRule, GuardrailSet, SetDefault, SetMode};

use super::{Checker, Guardrails};

/// A set from `(name, action, pattern)` rules; messages are `msg-<name>`.
pub fn set(
    name: &str,
    default: SetDefault,
    mode: SetMode,
    rules: &[(&str, Action, &str)],
) -> GuardrailSet {
    GuardrailSet {
        name: name.to_string(),
        default,
        mode,
        rules: rules
            .iter()
            .map(|(n, a, p)| GuardrailRule {
                name: n.to_string(),
                pattern: p.to_string(),
                action: *a,
                message: format!("msg-{n}"),
            })
            .collect(),
    }
}

/// The shipped config/guardrails/destructive.toml, loaded through `Config` as a config
/// beside it would include it.
pub fn shipped_sets() -> Vec<GuardrailSet> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let text = "include = [\"guardrails/destructive.toml\"]\n\
                [server]\ndata_dir = \"/tmp/jitgate-test\"\nhostname = \"bastion.test\"\n";
    match Config::from_str(text, &dir.join("jitgate-test.toml")) {
        Ok(c) => c.guardrails,
        Err(e) => panic!("shipped guardrails do not load: {e}"),
    }
}

/// A checker over the shipped `destructive` set.
pub fn destructive() -> Checker {
    let rails = Arc::new(Guardrails::compile(&shipped_sets()).expect("compiles"));
    rails
        .checker(&["destructive".to_string()])
        .expect("destructive set exists")
}
