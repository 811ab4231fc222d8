//! jitgate: just-in-time SSH access with guardrails.
//!
//! One crate, a library and the `jitgate` binary; the library exists so that tests drive the
//! real server. See ARCHITECTURE.md for the map.

pub mod api;
pub mod bastion;
pub mod ca;
pub mod config;
pub mod guardrail;
pub mod hub;
pub mod model;
pub mod policy;
pub mod private;
pub mod recorder;
pub mod server;
pub mod store;
pub mod throttle;
