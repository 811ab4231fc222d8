//! One integration-test binary: the real `jitgate` binary and server, the real OpenSSH
//! tools, real SQLite, each test in its own temp dir on loopback.

mod api;
mod audit;
mod bastion;
mod config;
mod control;
mod journey;
mod recorder;
mod sshd;
mod store;
mod util;
