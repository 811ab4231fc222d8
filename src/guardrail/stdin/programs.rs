//! What the programs that can read commands from standard input do with it, given their
//! arguments: shells, `su` (and `runuser` without `-u`), `script`, and the SQL clients
//! `psql`, `mysql`/`mariadb` and `sqlite3`. Any other program's input is data.

use super::{Arg, Args, Syntax, base_name};

/// What a program does with its standard input.
pub(super) enum Input<'a> {
    /// Reads commands from it.
    Commands,
    /// Reads data from it, or nothing.
    Data,
    /// Runs this command string (`bash -c STRING`), whose own programs decide.
    Runs(&'a str),
}

/// Shells, by the base name of the program.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "pdksh", "ash", "yash", "fish", "tcsh", "csh",
    "busybox",
];

/// What `program` (a base name) does with its standard input, given `args`.
pub(super) fn input<'a>(program: &str, args: &'a [String]) -> Input<'a> {
    match program {
        "su" | "runuser" => su(args),
        "script" => script(args),
        "psql" => psql(args),
        "mysql" | "mariadb" => mysql(args),
        "sqlite3" => sqlite3(args),
        "fish" => fish(args),
        "busybox" => match args.split_first() {
            Some((applet, tail)) if base_name(applet) != "busybox" => {
                input(base_name(applet), tail)
            }
            _ => Input::Data,
        },
        shell if SHELLS.contains(&shell) => posix_shell(args),
        _ => Input::Data,
    }
}

/// A shell reads standard input unless it is given a script file or `-c` (the first operand
/// is then the command string); `-s` keeps reading standard input, with the operands as
/// arguments. Options that take a value (`-o pipefail`, `+O extglob`, `--rcfile FILE`) are
/// passed over with it.
fn posix_shell(args: &[String]) -> Input<'_> {
    let mut command = false;
    let mut stdin = false;
    let mut i = 0;
    let operand = loop {
        let Some(a) = args.get(i) else {
            break None;
        };
        i += 1;
        if a == "--" || a == "-" {
            // The end of the options.
            break args.get(i);
        }
        if let Some(long) = a.strip_prefix("--") {
            if matches!(long, "rcfile" | "init-file") {
                i += 1;
            }
            continue;
        }
        let Some(flags) = a.strip_prefix(['-', '+']) else {
            break Some(a);
        };
        if a.starts_with('-') {
            command |= flags.contains('c');
            stdin |= flags.contains('s');
        }
        i += flags.matches(['o', 'O']).count();
    };
    match operand {
        Some(string) if command => Input::Runs(string),
        // `bash -c` with no string fails.
        None if command => Input::Data,
        _ if stdin => Input::Commands,
        // A script file.
        Some(_) => Input::Data,
        None => Input::Commands,
    }
}

/// `fish -c STRING` (its `-c` takes a value); otherwise like other shells.
fn fish(args: &[String]) -> Input<'_> {
    const FISH: Syntax = Syntax {
        short: "cCdfoDp",
        glued: "",
        long: &[
            "command",
            "init-command",
            "debug",
            "debug-output",
            "features",
            "profile",
            "profile-startup",
        ],
    };
    for arg in Args::new(args, &FISH) {
        match arg {
            Arg::Short('c', Some(c)) | Arg::Long("command", Some(c)) => return Input::Runs(c),
            Arg::Operand(_) => return Input::Data,
            _ => {}
        }
    }
    Input::Commands
}

/// `su` starts a shell on standard input unless it is given a command (`-c`, `--command`),
/// with its options before or after the user name.
fn su(args: &[String]) -> Input<'_> {
    const SU: Syntax = Syntax {
        short: "cgGsw",
        glued: "",
        long: super::RUNUSER_LONG_VALUE,
    };
    for arg in Args::new(args, &SU) {
        match arg {
            Arg::Short('c', c) | Arg::Long("command" | "session-command", c) => {
                return c.map_or(Input::Data, Input::Runs);
            }
            Arg::Short('h' | 'V', _) | Arg::Long("help" | "version", _) => return Input::Data,
            _ => {}
        }
    }
    Input::Commands
}

/// `script [FILE]` runs a shell that reads the input; `script -c STRING` runs the string.
fn script(args: &[String]) -> Input<'_> {
    const SCRIPT: Syntax = Syntax {
        short: "BcEImoOT",
        glued: "t",
        long: &[
            "log-in",
            "log-out",
            "log-io",
            "log-timing",
            "logging-format",
            "command",
            "echo",
            "output-limit",
        ],
    };
    let mut command = None;
    for arg in Args::new(args, &SCRIPT) {
        match arg {
            Arg::Short('c', c) | Arg::Long("command", c) => command = c,
            Arg::Short('h' | 'V', _) | Arg::Long("help" | "version", _) => return Input::Data,
            _ => {}
        }
    }
    command.map_or(Input::Commands, Input::Runs)
}

/// `psql [OPTION]... [DBNAME [USERNAME]]` reads its statements from standard input unless
/// given `-c`, `-f FILE` (but `-f -` is standard input), `-l`, `-V` or `-?`.
fn psql(args: &[String]) -> Input<'_> {
    const PSQL: Syntax = Syntax {
        short: "cdfFhLopPRTUv",
        glued: "",
        long: &[
            "command",
            "dbname",
            "file",
            "field-separator",
            "host",
            "log-file",
            "output",
            "port",
            "pset",
            "record-separator",
            "table-attr",
            "username",
            "set",
            "variable",
        ],
    };
    let mut input = Input::Commands;
    for arg in Args::new(args, &PSQL) {
        match arg {
            Arg::Short('f', Some("-")) | Arg::Long("file", Some("-")) => return Input::Commands,
            Arg::Short('c' | 'f' | 'l' | 'V' | '?', _)
            | Arg::Long("command" | "file" | "list" | "version" | "help", _) => {
                input = Input::Data;
            }
            _ => {}
        }
    }
    input
}

/// `mysql [OPTIONS] [DATABASE]` (and `mariadb`) reads its statements from standard input
/// unless given `-e`, `--version` or `--help`. `-p` takes a password only glued
/// (`-pSECRET`; `-p` alone asks for it).
fn mysql(args: &[String]) -> Input<'_> {
    const MYSQL: Syntax = Syntax {
        short: "DhPuSe",
        glued: "p#",
        long: &[
            "database",
            "host",
            "port",
            "user",
            "socket",
            "execute",
            "init-command",
            "prompt",
            "tee",
            "delimiter",
            "protocol",
            "defaults-file",
            "defaults-extra-file",
            "default-character-set",
            "login-path",
        ],
    };
    for arg in Args::new(args, &MYSQL) {
        if let Arg::Short('e' | 'V' | '?' | 'I', _) | Arg::Long("execute" | "version" | "help", _) =
            arg
        {
            return Input::Data;
        }
    }
    Input::Commands
}

/// `sqlite3 [OPTIONS] FILENAME [SQL]...` reads its statements from standard input unless an
/// SQL operand follows the file name. Its options are single-dash words (`--header` is
/// `-header` too), anywhere among the operands; a few take one or two values.
fn sqlite3(args: &[String]) -> Input<'_> {
    let mut operands = 0;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        let Some(name) = a.strip_prefix('-') else {
            operands += 1;
            if operands > 1 {
                return Input::Data;
            }
            continue;
        };
        match name.strip_prefix('-').unwrap_or(name) {
            // `-A ARGS...` runs `.archive ARGS` and exits.
            "version" | "help" | "A" => return Input::Data,
            "cmd" | "init" | "separator" | "nullvalue" | "newline" | "nonce" | "vfs" | "mmap"
            | "maxsize" | "heap" | "escape" => i += 1,
            "lookaside" | "pagecache" => i += 2,
            _ => {}
        }
    }
    Input::Commands
}
