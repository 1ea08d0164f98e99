//! Shared support for the integration tests: a fleet of real OpenSSH
//! `sshd` hosts on loopback, and the files that point shipit at them.
//!
//! Use from a test file with `mod support;`.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod deploy_yml;
pub mod fleet;
pub mod json_events;
pub mod procs;
pub mod project;
pub mod report;

pub use fleet::{Fleet, FleetHost};
