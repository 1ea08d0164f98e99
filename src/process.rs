//! Telling one process from another across machines, containers and
//! reboots, from `/proc` (Linux), without `unsafe`.
//!
//! A pid alone names a process only within one pid namespace of one boot
//! of one kernel, and pids are reused. A [`ProcessIdentity`] adds what
//! makes it unique: the kernel's boot id (`/proc/sys/kernel/random/boot_id`,
//! new at every boot, different on every machine), the pid namespace
//! (`/proc/self/ns/pid`: containers on one kernel have their own) and the
//! process's start time (`/proc/PID/stat`, field 22: a reused pid starts
//! later). Whether a recorded process still runs is then answered with
//! [`Seen::Running`], [`Seen::Gone`] or, when it ran elsewhere, honestly
//! [`Seen::Unknown`].

use std::fs;

use serde::{Deserialize, Serialize};

/// Where a process ran and when it started; with its pid, it names the
/// process uniquely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// The kernel's boot id.
    pub boot_id: String,
    /// The pid namespace, as `readlink /proc/self/ns/pid` prints it
    /// (`pid:[4026531836]`).
    pub pid_ns: String,
    /// Clock ticks after boot at which the process started.
    pub start_time: u64,
}

/// What this machine can say about a recorded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// It runs here.
    Running,
    /// It ran here (this boot, this pid namespace) and is gone: no process
    /// has its pid, or the one that has it started at another time.
    Gone,
    /// It ran on another machine, in another container or before a reboot:
    /// nothing here can tell.
    Unknown,
}

impl ProcessIdentity {
    /// The identity of process `pid` as seen here, when `/proc` tells.
    pub fn of(pid: u32) -> Option<ProcessIdentity> {
        Some(ProcessIdentity {
            boot_id: boot_id()?,
            pid_ns: pid_namespace()?,
            start_time: start_time(pid)?,
        })
    }

    /// The identity of this process.
    pub fn of_self() -> Option<ProcessIdentity> {
        ProcessIdentity::of(std::process::id())
    }

    /// Whether process `pid`, started as `self` says, still runs, as seen
    /// from a machine with `here` (its boot id and pid namespace) where
    /// `start_time_of` reads a pid's start time (`None`: no such process).
    pub fn seen_from(
        &self,
        pid: u32,
        here: Option<(&str, &str)>,
        start_time_of: impl Fn(u32) -> Option<u64>,
    ) -> Seen {
        match here {
            Some((boot, ns)) if boot == self.boot_id && ns == self.pid_ns => {
                match start_time_of(pid) {
                    Some(t) if t == self.start_time => Seen::Running,
                    _ => Seen::Gone,
                }
            }
            _ => Seen::Unknown,
        }
    }

    /// [`ProcessIdentity::seen_from`] this machine.
    pub fn seen_here(&self, pid: u32) -> Seen {
        let (boot, ns) = (boot_id(), pid_namespace());
        let here = boot.as_deref().zip(ns.as_deref());
        self.seen_from(pid, here, start_time)
    }
}

/// This kernel's boot id.
pub fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// This process's pid namespace (`pid:[N]`).
pub fn pid_namespace() -> Option<String> {
    fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// When process `pid` started, in clock ticks after boot; `None` when there
/// is no such process (a zombie counts as gone).
pub fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of `/proc/PID/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Field 3, the state.
    if fields.next()? == "Z" {
        return None;
    }
    // Fields 4..=21 come before it.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 99 100";
        assert_eq!(
            parse_start_time(&format!("77 (a) b (c) {tail}")),
            Some(424242)
        );
        assert_eq!(parse_start_time("77 (x) Z 1 2"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn this_process_is_running_and_a_finished_child_is_gone() {
        let me = ProcessIdentity::of_self().expect("/proc is there");
        assert_eq!(me.seen_here(std::process::id()), Seen::Running);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let child_id = ProcessIdentity::of(pid);
        child.wait().unwrap();
        if let Some(c) = child_id {
            assert_eq!(c.seen_here(pid), Seen::Gone);
        }
    }

    #[test]
    fn only_the_same_boot_and_namespace_can_tell() {
        let id = ProcessIdentity {
            boot_id: "b1".into(),
            pid_ns: "pid:[1]".into(),
            start_time: 500,
        };
        let alive = |_| Some(500);
        let reused = |_| Some(900);
        let none = |_| None;
        // (here, start time of the pid here) -> seen
        type Here<'a> = Option<(&'a str, &'a str)>;
        type StartTimeOf<'a> = &'a dyn Fn(u32) -> Option<u64>;
        let cases: [(Here, StartTimeOf, Seen); 6] = [
            (Some(("b1", "pid:[1]")), &alive, Seen::Running),
            (Some(("b1", "pid:[1]")), &reused, Seen::Gone),
            (Some(("b1", "pid:[1]")), &none, Seen::Gone),
            // Another boot or machine: its pid says nothing here.
            (Some(("b2", "pid:[1]")), &none, Seen::Unknown),
            // Another container on the same kernel.
            (Some(("b1", "pid:[2]")), &none, Seen::Unknown),
            (None, &none, Seen::Unknown),
        ];
        for (here, start, want) in cases {
            assert_eq!(id.seen_from(7, here, start), want, "{here:?}");
        }
    }
}
