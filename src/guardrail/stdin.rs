//! Whether an exec command is a shell that takes its commands from standard input
//! (`bash -s`, `sh`, `sudo -i`, `su -`), so that its input must be line-checked like a shell
//! session's: otherwise `ssh db1 bash -s < script` would run every line of the script
//! unchecked while `ssh db1 < script` checks them.
//!
//! The test reads every simple command of the line (split at `;`, `&`, `|`, parentheses and
//! backquotes) the way a shell would split its words, without expanding anything: leading
//! `VAR=value` assignments and the wrappers in `WRAPPERS` (`sudo`, `env`, `timeout 600`,
//! `nice -n 5`, …) are passed over with their options, clustered or not (`sudo -iu
//! postgres`), and the values those take; what is left must be a shell (by base name) that
//! is given neither `-c` nor a script file (`bash -o pipefail` is given neither), or
//! `sudo -i`/`sudo -s`/`doas -s`, or `su` without `-c`. Anything else (`scp -t`,
//! `rsync --server`, `tar xf -`) is a program whose input is data, and is not line-checked.
//!
//! Not followed: `env -S` (its command is one word to split again) and wrappers not listed.

/// Shells, by the base name of the program.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "pdksh", "ash", "yash", "fish", "tcsh", "csh",
    "busybox",
];

/// How a wrapper reads its arguments: its short options that take a value (`sudo -u NAME`,
/// glued `-uNAME`, or last in a cluster, `-iu NAME`), its long ones that do (`--user NAME`;
/// `--user=NAME` is one word either way), and how many operands come between its options
/// and the command it runs (`timeout 600 bash`).
struct Wrapper {
    name: &'static str,
    short: &'static str,
    long: &'static [&'static str],
    operands: usize,
}

/// Commands that run the command in their arguments, with the syntax of their options.
const WRAPPERS: &[Wrapper] = &[
    wrapper("exec", "a", &[], 0),
    wrapper("command", "", &[], 0),
    wrapper("nohup", "", &[], 0),
    wrapper("setsid", "", &[], 0),
    wrapper("nice", "n", &["adjustment"], 0),
    wrapper("env", "uCS", &["unset", "chdir", "split-string"], 0),
    wrapper("timeout", "ks", &["kill-after", "signal"], 1),
    wrapper("stdbuf", "ioe", &["input", "output", "error"], 0),
    wrapper(
        "ionice",
        "cnpPu",
        &["class", "classdata", "pid", "pgid", "uid"],
        0,
    ),
    wrapper("chrt", "", &[], 1),
    wrapper("taskset", "", &[], 1),
    wrapper("time", "fo", &["format", "output"], 0),
    wrapper("sudo", "CDghpRrTtUu", SUDO_LONG_VALUE, 0),
    wrapper("doas", "uC", &[], 0),
];

/// `sudo`'s long options that take a value.
const SUDO_LONG_VALUE: &[&str] = &[
    "close-from",
    "chdir",
    "group",
    "host",
    "prompt",
    "chroot",
    "role",
    "type",
    "command-timeout",
    "other-user",
    "user",
];

const fn wrapper(
    name: &'static str,
    short: &'static str,
    long: &'static [&'static str],
    operands: usize,
) -> Wrapper {
    Wrapper {
        name,
        short,
        long,
        operands,
    }
}

/// Whether `command` runs a shell reading its commands from standard input anywhere in it
/// (`cd /srv && bash`, `cat | sh`: every simple command of a list or pipeline counts).
pub fn reads_commands_from_stdin(command: &str) -> bool {
    split(command).iter().any(|words| match unwrap(words) {
        Run::WrapperShell => true,
        Run::Program("su", args) => su_reads_stdin(args),
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
    /// `sudo -i`, `sudo -s` or `doas -s` with no command: the wrapper starts a shell itself.
    WrapperShell,
    /// Only assignments and wrappers, or `sudo` alone.
    Nothing,
}

fn unwrap(words: &[String]) -> Run<'_> {
    let mut rest = words;
    loop {
        let Some((first, tail)) = rest.split_first() else {
            return Run::Nothing;
        };
        if is_assignment(first) {
            rest = tail;
            continue;
        }
        let program = base_name(first);
        let Some(w) = WRAPPERS.iter().find(|w| w.name == program) else {
            return Run::Program(program, tail);
        };
        let mut shell = false;
        let after = options(tail, w.short, w.long, |o| {
            shell |= match (program, o) {
                ("sudo", Opt::Short(c)) => c == 'i' || c == 's',
                ("sudo", Opt::Long(l)) => l == "login" || l == "shell",
                ("doas", Opt::Short(c)) => c == 's',
                _ => false,
            };
        });
        // `env -` is `env -i`.
        let after = match after.split_first() {
            Some((dash, tail)) if program == "env" && dash == "-" => tail,
            _ => after,
        };
        rest = after.get(w.operands..).unwrap_or_default();
        if rest.is_empty() && shell {
            return Run::WrapperShell;
        }
    }
}

/// One option passed over by [`options`].
enum Opt<'a> {
    Short(char),
    Long(&'a str),
}

/// The words after the options at the start of `words` (up to the first operand, or just
/// after `--`), telling each option to `seen`. Short options may be clustered; for one in
/// `short`, which takes a value, the value is the rest of its word or else the next word.
/// A long option in `long` takes the next word as its value unless given as `--name=value`.
fn options<'a>(
    words: &'a [String],
    short: &str,
    long: &[&str],
    mut seen: impl FnMut(Opt<'_>),
) -> &'a [String] {
    let mut i = 0;
    while let Some(w) = words.get(i) {
        if w == "--" {
            i += 1;
            break;
        }
        if let Some(name) = w.strip_prefix("--") {
            match name.split_once('=') {
                Some((name, _)) => seen(Opt::Long(name)),
                None => {
                    seen(Opt::Long(name));
                    if long.contains(&name) {
                        i += 1;
                    }
                }
            }
        } else if let Some(flags) = w.strip_prefix('-').filter(|f| !f.is_empty()) {
            for (at, c) in flags.char_indices() {
                seen(Opt::Short(c));
                if short.contains(c) {
                    if at + c.len_utf8() == flags.len() {
                        i += 1;
                    }
                    break;
                }
            }
        } else {
            break;
        }
        i += 1;
    }
    words.get(i..).unwrap_or_default()
}

/// `su` starts a shell on standard input unless it is given a command (`-c`, `--command`),
/// with its options before or after the user name.
fn su_reads_stdin(args: &[String]) -> bool {
    const LONG_VALUE: &[&str] = &["group", "supp-group", "shell", "whitelist-environment"];
    let mut command = false;
    let mut rest = args;
    while !rest.is_empty() && !command {
        rest = options(rest, "gGsw", LONG_VALUE, |o| {
            command |= matches!(
                o,
                Opt::Short('c') | Opt::Long("command" | "session-command")
            );
        });
        // The user name (or `-`, which `options` stops at).
        rest = rest.get(1..).unwrap_or_default();
    }
    !command
}

/// A shell reads standard input unless it is given `-c` or a script file (`-s` keeps reading
/// standard input, with the words after it as arguments). Options that take a value
/// (`-o pipefail`, `+O extglob`, `--rcfile FILE`) are passed over with it.
fn shell_reads_stdin(name: &str, args: &[String]) -> bool {
    let args = if name == "busybox" {
        match args.split_first() {
            Some((applet, tail)) if SHELLS.contains(&base_name(applet)) => tail,
            _ => return false,
        }
    } else {
        args
    };
    let with_value: &[char] = if name == "fish" {
        &['C', 'd', 'f', 'o']
    } else {
        &['o', 'O']
    };
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--" || a == "-" {
            // The end of the options: a script file follows, or standard input is read.
            return args.get(i).is_none();
        }
        if a == "--command" {
            return false;
        }
        if let Some(long) = a.strip_prefix("--") {
            if matches!(long, "rcfile" | "init-file" | "init-command") {
                i += 1;
            }
            continue;
        }
        if let Some(flags) = a.strip_prefix('-') {
            if flags.contains('c') {
                return false;
            }
            if flags.contains('s') {
                return true;
            }
        }
        if let Some(flags) = a.strip_prefix(['-', '+']) {
            i += flags.matches(with_value).count();
            continue;
        }
        // The first operand is a script file.
        return false;
    }
    true
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
            // Clustered options and options that take a value.
            "sudo -iu postgres",
            "sudo -u postgres -i",
            "sudo -Eu root bash",
            "sudo -upostgres -s",
            "sudo --user postgres --login",
            "sudo --user=postgres bash -s",
            "sudo -g adm -Hu root sh",
            "doas -s",
            "doas -u postgres -s",
            "su -l postgres",
            "su postgres -s /bin/bash",
            "su -s /bin/sh -",
            "bash -o pipefail",
            "bash -eo pipefail",
            "bash -O extglob -s",
            "bash +o posix",
            "bash --rcfile /etc/bashrc",
            "bash -",
            "bash --",
            "fish -C 'set x 1'",
            // Wrappers with their options and operands.
            "timeout 600 bash",
            "timeout -s KILL -k 5 600 bash -s",
            "timeout --signal=TERM 10m sh",
            "setsid bash",
            "setsid -w sh -s",
            "nice -n 5 bash",
            "nice -5 bash",
            "nice -n5 sh",
            "nohup bash",
            "env VAR=x bash",
            "env -u HOME -i bash",
            "env - bash",
            "stdbuf -oL bash",
            "stdbuf -o L -e 0 sh",
            "ionice -c3 bash",
            "ionice -c 2 -n 7 sh",
            "chrt -f 10 bash",
            "taskset -c 0-3 bash",
            "time -p bash",
            "exec -a login bash",
            "sudo timeout 600 nice -n 5 bash",
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
            "sudo -iu postgres psql",
            "sudo -u postgres -i psql -f x.sql",
            "su -lc 'id' postgres",
            "su postgres -c id",
            "su --command=id postgres",
            "bash -o pipefail script.sh",
            "bash -O extglob -c 'ls'",
            "bash --rcfile rc script.sh",
            "bash - script.sh",
            "timeout 600 psql",
            "nice -n 5 tar xf -",
            "stdbuf -oL cat",
            "ionice -c3 rsync --server -e.LsfxCIvu . /srv",
            "sudo -u root scp -t /tmp",
            "timeout 10",
            "ls; echo \"a | bash\"",
        ] {
            assert!(!reads_commands_from_stdin(command), "{command:?}");
        }
    }
}
