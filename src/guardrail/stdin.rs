//! Whether an exec command reads commands from standard input (`bash -s`, `sudo -i`,
//! `su -`, `psql`, `sqlite3 app.db`), so that its input must be line-checked like a shell
//! session's: otherwise `ssh db1 bash -s < script` or `echo 'DROP TABLE t;' | ssh db1 psql`
//! would run every line unchecked while `ssh db1 < script` checks them.
//!
//! The test reads every simple command of the line (split at `;`, `&`, `|`, parentheses and
//! backquotes) the way a shell would split its words, without expanding anything: leading
//! `VAR=value` assignments and the wrappers in `WRAPPERS` (`sudo`, `env`, `timeout 600`,
//! `nice -n 5`, `runuser -u postgres --`, `chroot /srv`, `nsenter -t 1 -m`, `flock FILE`,
//! …) are passed over with their options, clustered or not (`sudo -iu postgres`), and the
//! values those take; `env -S 'bash -s'` has its value split into words again. A wrapper
//! left without a command that then starts a shell (`sudo -i`, `runuser -u postgres`,
//! `chroot /`, `unshare -r`) reads commands. What is left is a program, and [`programs`]
//! says what it does with its input: a shell given neither `-c` nor a script file, `su`,
//! `script` without `-c`, and the SQL clients `psql`, `mysql`/`mariadb` and `sqlite3` when
//! not given their statements as arguments read commands. A command string (`bash -c
//! STRING`, `su -c STRING`, `flock FILE -c STRING`, `script -c STRING`) is read the same
//! way in turn, to [`MAX_NESTING`] levels; one nested deeper is taken to read commands.
//! Anything else (`scp -t`, `rsync --server`, `tar xf -`, `pg_dump`) is a program whose
//! input is data, and is not line-checked.
//!
//! Not followed: programs not listed, among them interpreters reading a program from
//! standard input (`python3 -`, `perl`, `ruby`, `node`), which would run a partial program
//! if their input were cut at a blocked line; arguments `su` passes on to the shell after
//! the user name (`su root -- -c CMD`); and anything hidden by expansion (`$SHELL`,
//! `"$(echo bash)"`).

mod programs;

/// How deep command strings are followed (`bash -c "sudo sh -c 'psql'"` is two levels).
const MAX_NESTING: usize = 8;

/// How a program reads its arguments: its short options that take a value (`sudo -u NAME`,
/// glued `-uNAME`, or last in a cluster, `-iu NAME`), its short options whose value can only
/// be glued (`mysql -pSECRET`, `nsenter -m/proc/1/ns/mnt`; alone they take none), and its
/// long ones that take a value (`--user NAME`; `--user=NAME` is one word either way).
struct Syntax {
    short: &'static str,
    glued: &'static str,
    long: &'static [&'static str],
}

/// A wrapper's option syntax, and how many operands come between its options and the
/// command it runs (`timeout 600 bash`).
struct Wrapper {
    name: &'static str,
    syntax: Syntax,
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
    wrapper("runuser", "cgGsuw", RUNUSER_LONG_VALUE, 0),
    wrapper("chroot", "", &["userspec", "groups"], 1),
    wrapper(
        "nsenter",
        "tSGW",
        &["target", "setuid", "setgid", "wdns"],
        0,
    )
    .glued("muinpCUTrw"),
    wrapper("unshare", "RwSG", UNSHARE_LONG_VALUE, 0).glued("muinpUCT"),
    wrapper("flock", "wE", &["timeout", "wait", "conflict-exit-code"], 1),
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

/// `runuser`'s (and `su`'s) long options that take a value.
const RUNUSER_LONG_VALUE: &[&str] = &[
    "command",
    "session-command",
    "group",
    "supp-group",
    "shell",
    "user",
    "whitelist-environment",
];

/// `unshare`'s long options that take a value (`--mount[=FILE]` and the like take theirs
/// only after `=`).
const UNSHARE_LONG_VALUE: &[&str] = &[
    "root",
    "wd",
    "setuid",
    "setgid",
    "propagation",
    "setgroups",
    "map-user",
    "map-group",
    "map-users",
    "map-groups",
    "monotonic",
    "boottime",
];

const fn wrapper(
    name: &'static str,
    short: &'static str,
    long: &'static [&'static str],
    operands: usize,
) -> Wrapper {
    Wrapper {
        name,
        syntax: Syntax {
            short,
            glued: "",
            long,
        },
        operands,
    }
}

impl Wrapper {
    const fn glued(self, glued: &'static str) -> Wrapper {
        Wrapper {
            syntax: Syntax {
                glued,
                ..self.syntax
            },
            ..self
        }
    }
}

/// Whether `command` runs something reading its commands from standard input anywhere in it
/// (`cd /srv && bash`, `cat | sh`: every simple command of a list or pipeline counts).
pub fn reads_commands_from_stdin(command: &str) -> bool {
    reads(command, MAX_NESTING)
}

/// [`reads_commands_from_stdin`], with `depth` more command strings to follow.
fn reads(command: &str, depth: usize) -> bool {
    split(command)
        .iter()
        .any(|words| simple_reads(words, depth))
}

fn simple_reads(words: &[String], depth: usize) -> bool {
    let input = match unwrap(words) {
        Run::WrapperShell => programs::Input::Commands,
        Run::Nothing => programs::Input::Data,
        Run::Program(name, args) => programs::input(name, args),
        Run::Command(command) => programs::Input::Runs(command),
        Run::Words(words) => return depth == 0 || simple_reads(&words, depth - 1),
    };
    match input {
        programs::Input::Commands => true,
        programs::Input::Data => false,
        programs::Input::Runs(command) => depth == 0 || reads(command, depth - 1),
    }
}

/// Whether any simple command of `command` runs a program named `name` (by base name, after
/// the same wrappers: `sudo /usr/lib/openssh/sftp-server` runs `sftp-server`), command
/// strings included (`sh -c /usr/lib/openssh/sftp-server`). One nested deeper than
/// [`MAX_NESTING`] is taken to run it: the answer refuses, not allows.
pub fn runs_program(command: &str, name: &str) -> bool {
    runs_in(command, name, MAX_NESTING)
}

/// [`runs_program`], with `depth` more command strings to follow.
fn runs_in(command: &str, name: &str, depth: usize) -> bool {
    split(command).iter().any(|words| runs(words, name, depth))
}

fn runs(words: &[String], name: &str, depth: usize) -> bool {
    let string = match unwrap(words) {
        Run::Program(p, _) if p == name => return true,
        Run::Program(p, args) => match programs::input(p, args) {
            programs::Input::Runs(string) => string,
            programs::Input::Commands | programs::Input::Data => return false,
        },
        Run::Command(string) => string,
        Run::Words(words) => return depth == 0 || runs(&words, name, depth - 1),
        Run::WrapperShell | Run::Nothing => return false,
    };
    depth == 0 || runs_in(string, name, depth - 1)
}

/// What one simple command runs, once its assignments and wrappers are passed over.
enum Run<'a> {
    /// A program (its base name) and its arguments.
    Program(&'a str, &'a [String]),
    /// A wrapper with no command that starts a shell itself: `sudo -i`, `sudo -s`,
    /// `doas -s`, `runuser -u NAME`, `chroot DIR`, `nsenter …`, `unshare …`.
    WrapperShell,
    /// A command string the wrapper has a shell run: `flock FILE -c STRING`.
    Command(&'a str),
    /// Words to read again as a simple command: `env -S STRING` splits its value into words
    /// in front of the rest.
    Words(Vec<String>),
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
        // Given no command, these start a shell.
        let mut shell = matches!(program, "chroot" | "nsenter" | "unshare");
        let mut user = false;
        let mut command: &[String] = &[];
        let mut args = Args::new(tail, &w.syntax);
        while let Some(arg) = args.next() {
            match (program, arg) {
                (_, Arg::Operand(words)) => {
                    command = words;
                    break;
                }
                (_, Arg::Long("help" | "version", None)) => return Run::Nothing,
                ("sudo", Arg::Short('i' | 's', _) | Arg::Long("login" | "shell", _))
                | ("doas", Arg::Short('s', _)) => shell = true,
                ("runuser", Arg::Short('u', _) | Arg::Long("user", _)) => {
                    user = true;
                    shell = true;
                }
                ("env", Arg::Short('S', Some(s)) | Arg::Long("split-string", Some(s))) => {
                    let mut words = vec!["env".to_string()];
                    words.extend(split_words(s));
                    words.extend(args.rest().iter().cloned());
                    return Run::Words(words);
                }
                _ => {}
            }
        }
        match (program, command.split_first()) {
            // Without `-u`, `runuser` is `su`.
            ("runuser", _) if !user => return Run::Program(program, tail),
            // `env -` is `env -i`.
            ("env", Some((dash, after))) if dash == "-" => command = after,
            _ => {}
        }
        rest = command.get(w.operands..).unwrap_or_default();
        // `flock FILE -c STRING`.
        if program == "flock"
            && let Some((c, after)) = rest.split_first()
            && (c == "-c" || c == "--command")
        {
            return after.first().map_or(Run::Nothing, |s| Run::Command(s));
        }
        if rest.is_empty() && shell {
            return Run::WrapperShell;
        }
    }
}

/// One argument read by [`Args`].
#[derive(Debug, Clone, Copy)]
enum Arg<'a> {
    /// A short option, with its value where it takes one.
    Short(char, Option<&'a str>),
    /// A long option (its name without `--`), with its value where it takes one or is given
    /// one (`--name=value`).
    Long(&'a str, Option<&'a str>),
    /// A word that is not an option (`-` is one), or any word after `--`; with the words
    /// after it, where a wrapper's command goes on.
    Operand(&'a [String]),
}

/// A program's arguments as `getopt_long` reads them: short options may be clustered (for
/// one in `syntax.short`, which takes a value, the value is the rest of its word or else
/// the next word); a long option in `syntax.long` takes the next word as its value unless
/// given as `--name=value`. Options and operands may come in any order (GNU permutes them);
/// a wrapper stops at its first operand.
struct Args<'a, 's> {
    /// The words not yet read.
    words: &'a [String],
    syntax: &'s Syntax,
    /// The rest of a cluster of short options being read.
    cluster: &'a str,
    /// Past `--`: every word is an operand.
    operands_only: bool,
}

impl<'a, 's> Args<'a, 's> {
    fn new(words: &'a [String], syntax: &'s Syntax) -> Args<'a, 's> {
        Args {
            words,
            syntax,
            cluster: "",
            operands_only: false,
        }
    }

    /// The words after the argument last read (and its value).
    fn rest(&self) -> &'a [String] {
        self.words
    }

    fn next_word(&mut self) -> Option<&'a str> {
        let (word, rest) = self.words.split_first()?;
        self.words = rest;
        Some(word)
    }

    fn short(&mut self, flags: &'a str) -> Arg<'a> {
        let mut chars = flags.chars();
        let c = chars.next().unwrap_or('-');
        let after = chars.as_str();
        if self.syntax.short.contains(c) {
            let value = if after.is_empty() {
                self.next_word()
            } else {
                Some(after)
            };
            Arg::Short(c, value)
        } else if self.syntax.glued.contains(c) {
            Arg::Short(c, Some(after).filter(|v| !v.is_empty()))
        } else {
            self.cluster = after;
            Arg::Short(c, None)
        }
    }
}

impl<'a> Iterator for Args<'a, '_> {
    type Item = Arg<'a>;

    fn next(&mut self) -> Option<Arg<'a>> {
        if !self.cluster.is_empty() {
            let flags = std::mem::take(&mut self.cluster);
            return Some(self.short(flags));
        }
        let (word, rest) = self.words.split_first()?;
        if self.operands_only || !word.starts_with('-') || word == "-" {
            let operand = self.words;
            self.words = rest;
            return Some(Arg::Operand(operand));
        }
        self.words = rest;
        if word == "--" {
            self.operands_only = true;
            return self.next();
        }
        if let Some(long) = word.strip_prefix("--") {
            return Some(match long.split_once('=') {
                Some((name, value)) => Arg::Long(name, Some(value)),
                None if self.syntax.long.contains(&long) => Arg::Long(long, self.next_word()),
                None => Arg::Long(long, None),
            });
        }
        Some(self.short(&word[1..]))
    }
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
    lex(command, true)
}

/// Splits `env -S`'s value into words: blanks separate them, quotes and backslashes are
/// removed; `;`, `|` and the like are parts of words.
fn split_words(text: &str) -> Vec<String> {
    lex(text, false).into_iter().flatten().collect()
}

fn lex(text: &str, operators: bool) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let blank = matches!(c, ' ' | '\t') || (!operators && c == '\n');
        let ends = operators && matches!(c, '\n' | ';' | '&' | '|' | '(' | ')' | '`');
        match c {
            _ if blank || ends => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                if ends && !words.is_empty() {
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
mod tests;
