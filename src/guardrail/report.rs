//! `jitgate guardrail test`: verdicts for commands given on the command line or in a file
//! (for policy CI), printed one per command.

use std::fmt;
use std::sync::Arc;

use crate::config::GuardrailSet;

use super::engine::{GuardrailError, Guardrails, Verdict};

/// One command and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCheck {
    pub command: String,
    /// Line number in the commands file, if it came from one.
    pub line: Option<usize>,
    pub verdict: Verdict,
    /// What the deciding rule matched, in the command's normal form.
    pub matched: Option<String>,
}

/// ```text
/// blocked      rm -rf /
///              by destructive/rm-recursive-system: recursive delete of / … (matched "rm -rf /")
/// ```
impl fmt::Display for CommandCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.line {
            write!(f, "{n}: ")?;
        }
        write!(f, "{:<12} {}", self.verdict.as_str(), self.command)?;
        if let Some(hit) = self.verdict.hit() {
            write!(
                f,
                "\n{:12} by {}/{}: {}",
                "", hit.set, hit.rule, hit.message
            )?;
            if let Some(m) = &self.matched {
                write!(f, " (matched {m:?})")?;
            }
        }
        Ok(())
    }
}

/// Checks each command against `sets`, or only the set named `only`.
pub fn test_commands(
    sets: &[GuardrailSet],
    only: Option<&str>,
    commands: &[String],
) -> Result<Vec<CommandCheck>, GuardrailError> {
    let numbered: Vec<(Option<usize>, &str)> =
        commands.iter().map(|c| (None, c.as_str())).collect();
    check_all(sets, only, &numbered)
}

/// Checks each command of a commands file (one per line; blank lines and `#` comments
/// skipped); each result carries its line number.
pub fn test_command_file(
    sets: &[GuardrailSet],
    only: Option<&str>,
    text: &str,
) -> Result<Vec<CommandCheck>, GuardrailError> {
    let numbered: Vec<(Option<usize>, &str)> = read_command_file(text)
        .into_iter()
        .map(|(n, c)| (Some(n), c))
        .collect();
    check_all(sets, only, &numbered)
}

/// The commands of a commands file with their 1-based line numbers.
pub fn read_command_file(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// 1 if any command is blocked, else 0 (`would-block` and `warned` are allowed).
pub fn exit_code(checks: &[CommandCheck]) -> i32 {
    if checks.iter().any(|c| c.verdict.is_blocked()) {
        1
    } else {
        0
    }
}

fn check_all(
    sets: &[GuardrailSet],
    only: Option<&str>,
    commands: &[(Option<usize>, &str)],
) -> Result<Vec<CommandCheck>, GuardrailError> {
    let rails = Arc::new(Guardrails::compile(sets)?);
    let names: Vec<String> = match only {
        Some(name) => vec![name.to_string()],
        None => rails.set_names().map(str::to_string).collect(),
    };
    let checker = rails.checker(&names)?;
    Ok(commands
        .iter()
        .map(|&(line, command)| {
            let verdict = checker.check(command);
            let matched = verdict.hit().and_then(|h| rails.matched_text(h, command));
            CommandCheck {
                command: command.to_string(),
                line,
                verdict,
                matched,
            }
        })
        .collect())
}
