//! What a killed run leaves on this machine, and cleaning it up.
//!
//! Each run keeps its ssh control sockets (and the masters' logs) in one
//! temporary directory named after the run's process:
//! `shipit-<pid namespace>-<pid>-<start time>-XXXXXX` (see
//! [`crate::process`]). A run that ends normally removes it and ends its
//! masters. A run killed outright (SIGKILL) cannot: its masters exit on
//! their own shortly after (`ControlPersist`), and the next run removes
//! the directory, ending any master still up first. Only directories of
//! runs that are certainly gone are touched: same pid namespace (so a run
//! in another container sharing the temporary directory is left alone),
//! and no process with that pid and start time. Directories of older
//! versions (`shipit-XXXXXX`) carry no owner and are left alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process;

/// The start of a run's directory name, for this process; `None` when
/// `/proc` does not tell (the directory then carries no owner, as before).
pub fn run_dir_prefix() -> Option<String> {
    let ns = namespace_number(&process::pid_namespace()?)?;
    let pid = std::process::id();
    let start = process::start_time(pid)?;
    Some(format!("shipit-{ns}-{pid}-{start}-"))
}

/// `pid:[4026531836]` -> `4026531836`.
fn namespace_number(ns: &str) -> Option<u64> {
    ns.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// The owner of a run directory called `name`: (pid namespace, pid,
/// start time).
fn owner(name: &str) -> Option<(u64, u32, u64)> {
    let rest = name.strip_prefix("shipit-")?;
    let mut parts = rest.splitn(4, '-');
    let ns = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    // The random part tempfile adds.
    parts.next().filter(|r| !r.is_empty())?;
    Some((ns, pid, start))
}

/// A dead run's directory, cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    pub pid: u32,
    /// Masters of that run that were still up and were ended.
    pub masters_ended: usize,
    pub dir: PathBuf,
}

impl Swept {
    /// One line for people.
    pub fn describe(&self) -> String {
        let masters = match self.masters_ended {
            0 => String::new(),
            1 => "ended its ssh connection still open and ".to_string(),
            n => format!("ended its {n} ssh connections still open and "),
        };
        format!(
            "a shipit run that was killed (pid {}) left ssh connections behind: {masters}removed `{}`",
            self.pid,
            self.dir.display()
        )
    }
}

/// Cleans, in `tmp`, the run directories of runs that are gone: ends each
/// master still listening on a control socket there (`ssh -O exit`), then
/// removes the directory. Best effort: what cannot be removed is left.
pub fn sweep(tmp: &Path) -> Vec<Swept> {
    let Some(here) = process::pid_namespace().and_then(|ns| namespace_number(&ns)) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(tmp) else {
        return Vec::new();
    };
    let mut swept = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((ns, pid, start)) = owner(&name) else {
            continue;
        };
        if ns != here || process::start_time(pid) == Some(start) {
            continue;
        }
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = e.path();
        let masters_ended = end_masters(&dir);
        if fs::remove_dir_all(&dir).is_ok() {
            swept.push(Swept {
                pid,
                masters_ended,
                dir,
            });
        }
    }
    swept
}

/// Ends the master of each control socket `DIR/ssh-*/s`; how many were up.
fn end_masters(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| e.path().join("s"))
        .filter(|s| s.exists())
        .filter(|socket| {
            use std::os::unix::process::CommandExt as _;
            // A dead master's socket refuses at once; a live one answers.
            Command::new("ssh")
                .arg("-S")
                .arg(socket)
                .args(["-o", "BatchMode=yes", "-O", "exit", "none"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .status()
                .is_ok_and(|s| s.success())
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dirs_name_their_owner() {
        let prefix = run_dir_prefix().expect("/proc is there");
        let (ns, pid, start) = owner(&format!("{prefix}AbC123")).unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(Some(start), process::start_time(pid));
        assert_eq!(
            Some(ns),
            namespace_number(&process::pid_namespace().unwrap())
        );
        for other in [
            "shipit-AbC123",
            "shipit-1-2-3-",
            "shipit-x-2-3-AbC",
            "other-1-2-3-AbC",
        ] {
            assert_eq!(owner(other), None, "{other}");
        }
    }

    #[test]
    fn only_directories_of_runs_that_are_gone_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let mine = tmp
            .path()
            .join(format!("{}live", run_dir_prefix().unwrap()));
        let mut child = Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        let dead_start = process::start_time(dead_pid);
        child.wait().unwrap();
        let ns = namespace_number(&process::pid_namespace().unwrap()).unwrap();
        let dead = tmp.path().join(format!(
            "shipit-{ns}-{dead_pid}-{}-gone",
            dead_start.unwrap_or(1)
        ));
        let elsewhere = tmp
            .path()
            .join(format!("shipit-{}-{dead_pid}-1-other", ns + 1));
        let old = tmp.path().join("shipit-AbC123");
        for d in [&mine, &dead, &elsewhere, &old] {
            fs::create_dir_all(d.join("ssh-1-0")).unwrap();
        }
        let swept = sweep(tmp.path());
        assert_eq!(
            swept,
            vec![Swept {
                pid: dead_pid,
                masters_ended: 0,
                dir: dead.clone()
            }]
        );
        assert!(!dead.exists());
        assert!(mine.exists() && elsewhere.exists() && old.exists());
    }
}
