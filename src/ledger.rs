//! The ledger: `deploy_to/.shipit/ledger.jsonl`, one JSON object per event.
//!
//! Lines are appended whole with `>>` (O_APPEND), so concurrent writers never
//! interleave within a line. Readers skip lines that do not parse and say so.

use serde::{Deserialize, Serialize};

/// Where the ledger lives, relative to `deploy_to`.
pub const LEDGER_PATH: &str = ".shipit/ledger.jsonl";

/// What happened to a release on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The release dir was created and filled on the host.
    Staged,
    /// `current` was switched to the release.
    Published,
    /// The smoke test passed on the host.
    Verified,
    /// The release failed on this host (or the run was undone).
    Failed,
    RolledBack,
    /// A release manager's approval of a release for a stage (its line
    /// carries `from_stage`, `expires` and maybe `signature` as well).
    Approved,
    /// A release manager's rejection: it blocks promotion of that commit.
    Rejected,
    /// A stage got a release promoted from another stage (`from_stage`,
    /// `from_release`, `approvers` on the line as well).
    Promoted,
    /// A deploy lock was freed with `shipit unlock --force`.
    /// `user` is who forced it; `detail` names the holder whose lock was
    /// freed; `release` and `commit` are empty (a lock belongs to no
    /// release).
    Unlocked,
}

/// One ledger line. `time` is last so shell-side timestamping can append it
/// (see [`Entry::split_for_shell`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub event: EventKind,
    pub release: String,
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub application: String,
    pub stage: String,
    pub host: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// RFC 3339 UTC, taken on the host when the line is written.
    pub time: String,
}

const TIME_MARK: &str = "\u{1}time\u{1}";

impl Entry {
    /// The JSON line split around the time value: `(before, after)`, so a
    /// shell script can write `before`, the host's `date`, then `after`.
    pub fn split_for_shell(&self) -> (String, String) {
        let mut e = self.clone();
        e.time = TIME_MARK.to_string();
        let json = serde_json::to_string(&e).expect("ledger entries always serialise");
        // serde_json escapes \u{1} as \u0001.
        let mark = serde_json::to_string(TIME_MARK).expect("string serialises");
        let mark = mark.trim_matches('"');
        let (a, b) = json
            .split_once(mark)
            .expect("the time mark is in the serialised entry");
        (a.to_string(), b.to_string())
    }
}

/// The result of reading a ledger file: good entries in file order, and the
/// 1-based numbers of lines that did not parse.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    pub bad_lines: Vec<usize>,
}

pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => out.entries.push(e),
            Err(_) => out.bad_lines.push(i + 1),
        }
    }
    out
}

/// A ledger entry for unit tests: `event` of `release` (commit
/// `c-<release>`) by alice on web-1 in staging.
/// The warning for ledger lines of `host` that did not parse and were
/// skipped, naming the line numbers and the file; `None` when there are
/// none.
pub fn bad_lines_warning(host: &str, bad_lines: &[usize], ledger_path: &str) -> Option<String> {
    if bad_lines.is_empty() {
        return None;
    }
    Some(format!(
        "`{host}`: skipped line{} {} of `{ledger_path}`: not ledger records",
        if bad_lines.len() == 1 { "" } else { "s" },
        bad_lines
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

#[cfg(test)]
pub fn test_entry(event: EventKind, release: &str) -> Entry {
    Entry {
        event,
        release: release.into(),
        commit: format!("c-{release}"),
        digest: None,
        application: "shop".into(),
        stage: "staging".into(),
        host: "web-1".into(),
        user: "alice".into(),
        build_url: None,
        detail: None,
        time: "2026-11-24T19:01:02Z".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            event: EventKind::Verified,
            release: "20261124T190102Z".into(),
            commit: "abc".into(),
            digest: None,
            application: "shop".into(),
            stage: "staging".into(),
            host: "web-1".into(),
            user: "alice".into(),
            build_url: None,
            detail: None,
            time: "2026-11-24T19:01:02Z".into(),
        }
    }

    #[test]
    fn split_for_shell_rebuilds_the_line() {
        let e = entry();
        let (a, b) = e.split_for_shell();
        let line = format!("{a}{}{b}", e.time);
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
    }

    #[test]
    fn unlocked_serialises_in_snake_case() {
        let mut e = entry();
        e.event = EventKind::Unlocked;
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains("\"event\":\"unlocked\""), "{line}");
    }

    #[test]
    fn parse_skips_and_reports_bad_lines() {
        let good = serde_json::to_string(&entry()).unwrap();
        let text = format!("{good}\n{{\"event\":\"verif\n{good}\n");
        let p = parse(&text);
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.bad_lines, vec![2]);
    }
}
