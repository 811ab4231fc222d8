//! Whether an exec command is a shell that takes its commands from standard input
//! (`bash -s`, `sh`, `sudo -i`, `su -`), so that its input must be line-checked like a shell
//! session's: otherwise `ssh db1 bash -s < script` would run every line of the script
//! unchecked while `ssh db1 < script` checks them.
//!
//! The test reads every simple command of the line (split at `;`, `&`, `|`, parentheses and
//! backquotes) the way a shell would split its words, without expanding anything: leading
//! `VAR=value` assignments and the wrappers `exec`, `env`, `command`, `nohup`, `nice`,
//! `sudo` and `doas` are passed over; what is left must be a shell (by base name) that is
//! given neither `-c` nor a script file, or `sudo -i`/`sudo -s`, or `su` without `-c`. Anything else (`scp -t`, `rsync --server`, `tar xf -`) is a program whose input is
//! data, and is not line-checked.

/// Shells, by the base name of the program.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "pdksh", "ash", "yash", "fish", "tcsh", "csh",
    "busybox",
];

/// `sudo` options that take a value in the next word.
const SUDO_VALUE: &[&str] = &[
    "-u", "-g", "-h", "-p", "-C", "-D", "-R", "-T", "-U", "-r", "-t",
];

/// Whether `command` runs a shell reading its commands from standard input anywhere in it
/// (`cd /srv && bash`, `cat | sh`: every simple command of a list or pipeline counts).
pub fn reads_commands_from_stdin(command: &str) -> bool {
    split(command).iter().any(|words| match unwrap(words) {
        Run::SudoShell => true,
        Run::Program("su", args) => !args.iter().any(|w| w == "-c" || w.starts_with("--command")),
        Run::Program(name, args) if SHELLS.contains(&name) => shell_reads_stdin(name, args),
        Run::Program(..) | Run::Nothing => false,
    })
}

/// Whether any simple command of `command` runs a program named `name` (by base name, after
/// the same wrappers: `sudo /usr/lib/openssh/sftp-server` runs `sftp-server`).
pub fn runs_program(command: &str, name: &str) -> bool {
    split(command)
        .iter()
        .any(|words| matches!(unwrap(words), Run::Program(p, _) if p == name))
}

/// What one simple command runs, once its assignments and wrappers are passed over.
enum Run<'a> {
    /// A program (its base name) and its arguments.
    Program(&'a str, &'a [String]),
    /// `sudo -i` or `sudo -s` with no command: sudo starts a shell itself.
    SudoShell,
    /// Only assignments and wrappers, or `sudo` alone.
    Nothing,
}

fn unwrap(words: &[String]) -> Run<'_> {
    let mut rest = words;
    loop {
        let Some((first, tail)) = rest.split_first() else {
            return Run::Nothing;
        };
        rest = match base_name(first) {
            _ if is_assignment(first) => tail,
            "exec" | "command" | "nohup" => skip_options(tail, &[]),
            "nice" => skip_options(tail, &["-n"]),
            "env" => skip_options(tail, &["-u", "-C", "-S"]),
            "doas" => skip_options(tail, &["-u", "-C"]),
            "sudo" => {
                let after = skip_options(tail, SUDO_VALUE);
                if !after.is_empty() {
                    after
                } else if tail.iter().any(|o| match o.strip_prefix('-') {
                    Some(long) if long.starts_with('-') => long == "-login" || long == "-shell",
                    Some(flags) => flags.contains('i') || flags.contains('s'),
                    None => false,
                }) {
                    return Run::SudoShell;
                } else {
                    return Run::Nothing;
                }
            }
            program => return Run::Program(program, tail),
        };
    }
}

/// A shell reads standard input unless it is given `-c` or a script file (`-s` keeps reading
/// standard input, with the words after it as arguments).
fn shell_reads_stdin(name: &str, args: &[String]) -> bool {
    let args = if name == "busybox" {
        match args.split_first() {
            Some((applet, tail)) if SHELLS.contains(&base_name(applet)) => tail,
            _ => return false,
        }
    } else {
        args
    };
    for a in args {
        if a == "--" || a == "--command" {
            return false;
        }
        if let Some(flags) = a.strip_prefix('-').filter(|f| !f.starts_with('-')) {
            if flags.contains('c') {
                return false;
            }
            if flags.contains('s') {
                return true;
            }
            continue;
        }
        if a.starts_with("--") || a.starts_with('+') {
            continue;
        }
        // The first operand is a script file.
        return false;
    }
    true
}

/// The words after the options of a wrapper, and after its `VAR=value` words (`env`).
fn skip_options<'a>(mut words: &'a [String], with_value: &[&str]) -> &'a [String] {
    while let Some((w, tail)) = words.split_first() {
        if w == "--" {
            return tail;
        }
        if w.starts_with('-') && w.len() > 1 {
            words = if with_value.contains(&w.as_str()) && !tail.is_empty() {
                &tail[1..]
            } else {
                tail
            };
        } else if is_assignment(w) {
            words = tail;
        } else {
            break;
        }
    }
    words
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn base_name(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Splits a command line into simple commands, each a list of words, as a shell would: `;`,
/// `&`, `|`, parentheses and newlines end a command, blanks separate words, quotes and
/// backslashes are removed. Nothing is expanded.
fn split(command: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '`' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                if c != ' ' && c != '\t' && !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::reads_commands_from_stdin;

    #[test]
    fn shells_on_stdin_are_found() {
        for command in [
            "bash",
            "bash -s",
            "bash -s arg1 arg2",
            "/bin/sh",
            "sh -",
            "bash -l",
            "bash --login",
            "bash -x -s",
            "'bash'",
            "\"/usr/bin/bash\" -s",
            "exec bash",
            "env -i PATH=/bin bash -s",
            "LANG=C sh",
            "nohup nice -n 5 sh -s",
            "sudo -i",
            "sudo -s",
            "sudo -u postgres -i",
            "sudo --login",
            "sudo bash",
            "sudo -u root -E bash -s",
            "su",
            "su -",
            "su - postgres",
            "busybox sh",
            "doas -u root sh",
            "cd /srv && bash",
            "cat | sh",
            "true; exec sh",
            "(bash -s)",
            "echo `bash`",
        ] {
            assert!(reads_commands_from_stdin(command), "{command:?}");
        }
    }

    #[test]
    fn programs_are_found_behind_wrappers() {
        use super::runs_program;
        for (command, runs) in [
            ("/usr/lib/openssh/sftp-server", true),
            ("sudo -u root /usr/lib/openssh/sftp-server -l INFO", true),
            ("exec env A=b sftp-server", true),
            ("true; sftp-server", true),
            ("ls /usr/lib/openssh/sftp-server", false),
            ("scp -t /tmp", false),
        ] {
            assert_eq!(runs_program(command, "sftp-server"), runs, "{command:?}");
        }
    }

    #[test]
    fn commands_and_data_readers_are_not() {
        for command in [
            "",
            "ls -l",
            "bash -c 'echo hi'",
            "bash -lc 'echo hi'",
            "sh script.sh",
            "bash -- script.sh",
            "sudo systemctl restart nginx",
            "sudo",
            "sudo -u postgres psql",
            "su -c 'id' postgres",
            "scp -t /tmp",
            "rsync --server -vlogDtpre.iLsfxCIvu . /tmp",
            "tar xf -",
            "cat > file",
            "bashful",
            "busybox ls",
            "env FOO=bar ls",
            "echo 'bash; sh' | grep sh",
            "ls; echo \"a | bash\"",
        ] {
            assert!(!reads_commands_from_stdin(command), "{command:?}");
        }
    }
}
