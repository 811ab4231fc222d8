//! Which channel requests a rule lets through. The inner server's replies and the relay's
//! forwarding both decide with `allows`, so they never disagree.

use crate::config::AccessRule;

/// Variables passed on with `env` requests; others are dropped.
pub fn env_allowed(name: &str) -> bool {
    name == "LANG" || name == "TERM" || name.starts_with("LC_")
}

/// A channel request, as far as the decision to allow it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Pty,
    Shell,
    /// With its command: an exec of the sftp server is sftp.
    Exec(&'a str),
    Subsystem(&'a str),
    Env(&'a str),
    WindowChange,
    X11,
    Agent,
    /// `-L`, `-D` (a direct-tcpip channel) and `-R` (a tcpip-forward request).
    PortForwarding,
}

/// Whether `rule` lets this request through. The handler's reply and the relay both use it.
pub fn allows(rule: &AccessRule, req: Request<'_>) -> bool {
    match req {
        Request::Pty => rule.allow_pty,
        Request::Shell | Request::WindowChange => true,
        // `sftp -s /usr/lib/openssh/sftp-server` asks for an exec, not the subsystem.
        Request::Exec(command) => {
            rule.allow_sftp || !crate::guardrail::runs_program(command, "sftp-server")
        }
        Request::Subsystem(name) => name == "sftp" && rule.allow_sftp,
        Request::Env(name) => env_allowed(name),
        Request::Agent => rule.allow_agent_forwarding,
        Request::X11 => rule.allow_x11,
        Request::PortForwarding => rule.allow_port_forwarding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(sftp: bool, pty: bool) -> AccessRule {
        AccessRule {
            allow_sftp: sftp,
            allow_port_forwarding: sftp,
            allow_agent_forwarding: sftp,
            allow_x11: sftp,
            allow_pty: pty,
            ..AccessRule::bare()
        }
    }

    #[test]
    fn allows_table() {
        let open = rule(true, true);
        let closed = rule(false, false);
        for (req, on_open, on_closed) in [
            (Request::Pty, true, false),
            (Request::Shell, true, true),
            (Request::Exec("ls"), true, true),
            (Request::Exec("/usr/lib/openssh/sftp-server"), true, false),
            // `sftp -s "sh -c /usr/lib/openssh/sftp-server"` is sftp too.
            (
                Request::Exec("sh -c /usr/lib/openssh/sftp-server"),
                true,
                false,
            ),
            (Request::WindowChange, true, true),
            (Request::Subsystem("sftp"), true, false),
            (Request::Subsystem("netconf"), false, false),
            (Request::Env("LANG"), true, true),
            (Request::Env("LD_PRELOAD"), false, false),
            (Request::Agent, true, false),
            (Request::X11, true, false),
            (Request::PortForwarding, true, false),
        ] {
            assert_eq!(allows(&open, req), on_open, "{req:?} open");
            assert_eq!(allows(&closed, req), on_closed, "{req:?} closed");
        }
    }

    #[test]
    fn env_allow_list() {
        for (name, ok) in [
            ("LANG", true),
            ("LC_ALL", true),
            ("LC_CTYPE", true),
            ("TERM", true),
            ("LD_PRELOAD", false),
            ("PATH", false),
            ("lang", false),
        ] {
            assert_eq!(env_allowed(name), ok, "{name}");
        }
    }
}
