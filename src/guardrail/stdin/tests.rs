//! Which execs read commands from standard input: shells, SQL clients, command strings and
//! wrappers, each beside look-alikes whose input is data.

use super::{MAX_NESTING, reads_commands_from_stdin, runs_program};

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
        // SQL clients reading their statements from standard input.
        "psql",
        "sudo -u postgres psql",
        "sudo -iu postgres psql",
        "timeout 600 psql",
        "psql -d shop -U app",
        "psql shop app",
        "psql -X -v ON_ERROR_STOP=1 shop",
        "psql --set=x=1 -h db shop",
        "psql -f -",
        "psql --file=- shop",
        "psql -c 'select 1' -f -",
        "/usr/lib/postgresql/16/bin/psql -p 5433",
        "mysql shop",
        "mysql",
        "mariadb -u root -h db shop",
        "mysql -uroot -psecret shop",
        "mysql -pexecute shop",
        "mysql -u root -p shop",
        "mysql --batch --database=shop",
        "mysql -D shop -P 3307 -S /run/mysqld.sock",
        "sqlite3 /srv/app.db",
        "sqlite3",
        "sqlite3 -header app.db",
        "sqlite3 --csv app.db",
        "sqlite3 app.db -header -batch",
        "sqlite3 -cmd '.mode csv' app.db",
        "sqlite3 -separator , -nullvalue NULL app.db",
        "sqlite3 -init setup.sql app.db",
        "sqlite3 -lookaside 64 100 app.db",
        // Command strings that start something reading standard input.
        "bash -c bash",
        "bash -lc 'exec sh'",
        "sh -c 'exec bash -s'",
        "sh -c 'cd /srv && exec bash -s'",
        "bash -c -- psql",
        "bash -x -c 'sudo -i' argv0",
        "sh -c \"sh -c 'bash -s'\"",
        "zsh -c 'psql shop'",
        "fish -c bash",
        "fish --command='psql shop'",
        "su -c bash postgres",
        "su postgres -c psql",
        "su -lc 'exec bash' postgres",
        "su --command=bash",
        "sudo sh -c 'psql'",
        "sudo -u postgres bash -c 'cd /tmp && psql shop'",
        "busybox sh -c sh",
        // Wrappers now followed.
        "env -S 'bash -s'",
        "env -S'bash -s' x",
        "env --split-string='sudo -i'",
        "env -S '-i bash'",
        "env -S 'timeout 5' bash",
        "runuser -u postgres -- bash",
        "runuser -u postgres bash",
        "runuser -u postgres",
        "runuser --user=postgres -- psql shop",
        "runuser -l postgres",
        "runuser - postgres",
        "runuser postgres -c bash",
        "chroot /",
        "chroot /srv/jail",
        "chroot --userspec=1:1 / bash",
        "chroot --userspec 1:1 --groups 1 / sh -s",
        "nsenter -t 1 -m -u -i -n -p",
        "nsenter -t 1 -a bash",
        "nsenter --target=1 --mount psql",
        "nsenter -m/proc/1/ns/mnt bash",
        "nsenter -m/proc/1/ns/mnt",
        "unshare -r",
        "unshare -m -p -f bash",
        "unshare --propagation private -m",
        "flock /tmp/l bash",
        "flock -n -w 5 /tmp/l sh -s",
        "flock /tmp/l -c bash",
        "flock /tmp/l --command 'cd / && psql'",
        "script -q /dev/null",
        "script",
        "script -q -c bash /dev/null",
        "script -qc 'sudo -i' /dev/null",
        "sudo runuser -u postgres -- flock /tmp/l timeout 5 psql",
    ] {
        assert!(reads_commands_from_stdin(command), "{command:?}");
    }
}

#[test]
fn programs_are_found_behind_wrappers() {
    for (command, runs) in [
        ("/usr/lib/openssh/sftp-server", true),
        ("sudo -u root /usr/lib/openssh/sftp-server -l INFO", true),
        ("exec env A=b sftp-server", true),
        ("true; sftp-server", true),
        ("env -S 'sftp-server -l INFO'", true),
        ("runuser -u root -- /usr/lib/openssh/sftp-server", true),
        ("flock /tmp/l sftp-server", true),
        // Command strings, as a shell would run them.
        ("sh -c /usr/lib/openssh/sftp-server", true),
        ("bash -lc 'exec sftp-server -e'", true),
        ("sudo su -c 'sh -c sftp-server' root", true),
        ("flock /tmp/l -c sftp-server", true),
        ("ls /usr/lib/openssh/sftp-server", false),
        ("scp -t /tmp", false),
        ("sh -c 'ls /usr/lib/openssh/sftp-server'", false),
        ("echo sftp-server", false),
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
        "su -c 'id' postgres",
        "scp -t /tmp",
        "rsync --server -vlogDtpre.iLsfxCIvu . /tmp",
        "tar xf -",
        "cat > file",
        "bashful",
        "busybox ls",
        "env FOO=bar ls",
        "echo 'bash; sh' | grep sh",
        "sudo -u postgres -i psql -f x.sql",
        "su -lc 'id' postgres",
        "su postgres -c id",
        "su --command=id postgres",
        "bash -o pipefail script.sh",
        "bash -O extglob -c 'ls'",
        "bash --rcfile rc script.sh",
        "bash - script.sh",
        "nice -n 5 tar xf -",
        "stdbuf -oL cat",
        "ionice -c3 rsync --server -e.LsfxCIvu . /srv",
        "sudo -u root scp -t /tmp",
        "timeout 10",
        "ls; echo \"a | bash\"",
        // SQL clients given their statements, and dump tools.
        "psql -c 'select 1'",
        "psql shop -c 'select 1'",
        "psql -Atc 'select 1' shop",
        "psql --command='select 1'",
        "psql -f x.sql",
        "psql shop -f x.sql",
        "psql --file x.sql",
        "psql -l",
        "psql --list",
        "psql -V",
        "psql --help",
        "sudo -u postgres psql -c 'select 1'",
        "mysql -e 'select 1' shop",
        "mysql shop -e 'select 1'",
        "mysql -BNe 'select 1'",
        "mysql --execute='select 1'",
        "mariadb --version",
        "mysql -u root -psecret -e 'select 1'",
        "sqlite3 app.db 'select 1'",
        "sqlite3 -header app.db 'select 1'",
        "sqlite3 app.db -csv 'select 1'",
        "sqlite3 -cmd '.mode csv' app.db 'select 1'",
        "sqlite3 -version",
        "sqlite3 -help",
        "pg_dump shop",
        "mysqldump shop",
        "pg_restore -d shop",
        // Command strings that start nothing reading standard input.
        "bash -c 'psql -c \"select 1\"'",
        "sh -c 'bash script.sh'",
        "bash -c",
        "fish -c 'echo hi'",
        "su -c id postgres",
        "runuser postgres -c id",
        "sudo sh -c 'pg_dump shop'",
        // Wrappers given commands whose input is data.
        "env -S 'ls -l'",
        "env -S'tar xf -'",
        "runuser -u postgres -- id",
        "runuser -u postgres pg_dump shop",
        "chroot / ls",
        "chroot --userspec=1:1 /srv/jail tar xf -",
        "chroot --help",
        "nsenter -t 1 -m ls",
        "nsenter -m/proc/1/ns/mnt ls",
        "unshare -r id",
        "flock /tmp/l -c 'echo hi'",
        "flock /tmp/l tar xf -",
        "flock 9",
        "script -q -c 'ls' /dev/null",
        "script -V",
    ] {
        assert!(!reads_commands_from_stdin(command), "{command:?}");
    }
}

#[test]
fn nesting_is_followed_to_a_bound_past_which_input_is_checked() {
    // `inner` as one word, its blanks and backslashes escaped.
    let word = |inner: &str| inner.replace('\\', r"\\").replace(' ', r"\ ");
    let nested = |wrap: &str, depth: usize, inner: &str| {
        (0..depth).fold(inner.to_string(), |inner, _| {
            format!("{wrap} {}", word(&inner))
        })
    };
    for wrap in ["sh -c", "su -c", "flock /tmp/l -c", "env -S"] {
        for depth in 1..=MAX_NESTING {
            let reads = nested(wrap, depth, "bash");
            assert!(reads_commands_from_stdin(&reads), "{reads}");
            let not = nested(wrap, depth, "ls");
            assert!(!reads_commands_from_stdin(&not), "{not}");
        }
        // Deeper than followed: taken to read commands.
        let deep = nested(wrap, MAX_NESTING + 1, "ls");
        assert!(reads_commands_from_stdin(&deep), "{deep}");
        // The sftp check follows the same strings, and refuses past the bound too.
        for depth in 1..=MAX_NESTING {
            let sftp = nested(wrap, depth, "/usr/lib/openssh/sftp-server");
            assert!(runs_program(&sftp, "sftp-server"), "{sftp}");
            let not = nested(wrap, depth, "ls");
            assert!(!runs_program(&not, "sftp-server"), "{not}");
        }
        assert!(runs_program(&deep, "sftp-server"), "{deep}");
    }
    // Long inputs are read in one pass.
    for (command, reads) in [
        ("sudo ".repeat(10_000) + "bash", true),
        ("A=1 ".repeat(10_000) + "ls", false),
        ("env -S ".repeat(10_000), true),
        ("sh -c ".repeat(10_000), true),
        ("busybox ".repeat(10_000) + "sh", false),
    ] {
        assert_eq!(reads_commands_from_stdin(&command), reads);
    }
}

#[test]
fn any_mix_of_wrappers_options_and_quotes_is_answered() {
    let pieces: Vec<&str> = "sudo -iu env -S - -- -c bash sh psql -f flock /l runuser -u chroot \
         nsenter -m/x unshare script sqlite3 -cmd mysql -pX su fish busybox timeout 5 --user= \
         --command ' \" \\ ; | x"
        .split(' ')
        .collect();
    // xorshift64*: deterministic, so a failure reproduces.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut below = |n: usize| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    };
    for _ in 0..5_000 {
        let command: String = (0..below(24))
            .map(|_| pieces[below(pieces.len())])
            .collect::<Vec<_>>()
            .join(" ");
        reads_commands_from_stdin(&command);
        runs_program(&command, "bash");
    }
}
