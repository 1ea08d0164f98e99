//! Finding and ending process trees, from `/proc` (the fleet runs on
//! Linux), without `unsafe`.

use std::collections::BTreeSet;
use std::fs;
use std::process::{Command, Stdio};

/// Every process whose chain of parents leads to `root` (not `root`
/// itself), as seen right now.
pub fn descendants(root: u32) -> Vec<u32> {
    let parents = parent_table();
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == p && found.insert(pid) {
                frontier.push(pid);
            }
        }
    }
    found.into_iter().collect()
}

/// Sends SIGKILL to each of `pids` (those already gone are ignored).
pub fn kill_all(pids: &[u32]) {
    signal("KILL", pids);
}

/// Sends signal `name` (`KILL`, `STOP`, `TERM`...) to each of `pids`.
pub fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    // The shell's builtin `kill`, so no procps is needed.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{name} \"$@\" 2>/dev/null; exit 0"))
        .arg("kill")
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Processes whose command line contains `needle`.
pub fn with_cmdline_containing(needle: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
                .is_ok_and(|cmdline| cmdline.contains(needle))
        })
        .collect()
}

/// Whether a process with this pid exists (zombies count as gone).
pub fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_stat(&stat).is_some_and(|(_, state, _)| state != 'Z'),
        Err(_) => false,
    }
}

fn parent_table() -> Vec<(u32, u32)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (pid, _, ppid) = parse_stat(&stat)?;
            Some((pid, ppid))
        })
        .collect()
}

/// `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so
/// the fields after it are found from the last `)`.
fn parse_stat(stat: &str) -> Option<(u32, char, u32)> {
    let pid = stat.split_once(' ')?.0.parse().ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((pid, state, ppid))
}

/// Kills `root` and every process under it. They are stopped first, then
/// collected, then killed, so none can fork out of reach or be re-parented
/// away (to init) before it is found.
pub fn kill_tree(root: u32) {
    signal("STOP", &[root]);
    let mut all = BTreeSet::from([root]);
    for _ in 0..20 {
        let new: Vec<u32> = descendants(root)
            .into_iter()
            .filter(|p| !all.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        signal("STOP", &new);
        all.extend(new);
    }
    let all: Vec<u32> = all.into_iter().collect();
    kill_all(&all);
}
