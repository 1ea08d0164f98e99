//! `shipit history STAGE [-n N]`: the stage's ledger, every host's merged
//! into one list, newest first. The same event recorded on several hosts
//! (same event, release, commit, user, detail and build URL, within a
//! minute) is one line that lists the hosts.
//!
//! ```text
//! 2026-11-24T19:01:02Z  verified     20261124T190102Z  e02a4e2c4457  tester  fleet-1, fleet-2, fleet-3
//! 2026-11-24T19:03:40Z  rolled_back  20261124T190102Z  e02a4e2c4457  tester  fleet-1  (to 20261120T080000Z)
//! ```

use chrono::{DateTime, Utc};

use super::on_hosts::{parse_output, print_report, read_stage};
use super::releases::warn_bad_lines;
use super::App;
use crate::ledger::{Entry, EventKind, LEDGER_PATH};
use crate::outcome::Outcome;
use crate::plan::inspect;

/// Events this far apart or closer can be one line.
const SAME_EVENT_WITHIN_SECS: i64 = 60;

/// One line of history: an event, and the hosts it happened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The earliest host's time, as the ledger wrote it.
    pub time: String,
    pub event: EventKind,
    pub release: String,
    pub commit: String,
    pub user: String,
    pub detail: Option<String>,
    pub build_url: Option<String>,
    /// By position in the stage, in stage order.
    pub hosts: Vec<usize>,
}

impl Row {
    fn same_event(&self, e: &Entry) -> bool {
        self.event == e.event
            && self.release == e.release
            && self.commit == e.commit
            && self.user == e.user
            && self.detail == e.detail
            && self.build_url == e.build_url
    }
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Merges the hosts' ledgers (`ledgers[i]` is host `i`'s entries in file
/// order) into rows, newest first. Entries are ordered by time; on one
/// host, entries with the same time keep their file order. An entry joins
/// a row of the same event that lacks its host and started at most a
/// minute before; entries whose time does not parse join only rows with
/// exactly the same time text, and sort as the oldest.
pub fn merge(ledgers: &[&[Entry]]) -> Vec<Row> {
    let mut all: Vec<(Option<DateTime<Utc>>, usize, usize, &Entry)> = ledgers
        .iter()
        .enumerate()
        .flat_map(|(h, entries)| {
            entries
                .iter()
                .enumerate()
                .map(move |(n, e)| (parse_time(&e.time), h, n, e))
        })
        .collect();
    all.sort_by_key(|a| (a.0, a.1, a.2));
    let mut rows: Vec<(Option<DateTime<Utc>>, Row)> = Vec::new();
    for (t, h, _, e) in all {
        let mut joined = false;
        for (rt, row) in rows.iter_mut().rev() {
            let close = match (t, *rt) {
                (Some(t), Some(rt)) => {
                    if (t - rt).num_seconds() > SAME_EVENT_WITHIN_SECS {
                        // Rows are in time order: none further back is close.
                        break;
                    }
                    true
                }
                (None, None) => row.time == e.time,
                _ => false,
            };
            if close && row.same_event(e) && !row.hosts.contains(&h) {
                row.hosts.push(h);
                row.hosts.sort();
                joined = true;
                break;
            }
        }
        if !joined {
            rows.push((
                t,
                Row {
                    time: e.time.clone(),
                    event: e.event,
                    release: e.release.clone(),
                    commit: e.commit.clone(),
                    user: e.user.clone(),
                    detail: e.detail.clone(),
                    build_url: e.build_url.clone(),
                    hosts: vec![h],
                },
            ));
        }
    }
    rows.into_iter().rev().map(|(_, r)| r).collect()
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// A row as a line: time, event, release, short commit, user, hosts, then
/// the detail in parentheses and the build URL when there are.
pub fn line(row: &Row, names: &[&str]) -> String {
    let commit = &row.commit[..row.commit.len().min(12)];
    let hosts: Vec<&str> = row.hosts.iter().map(|&h| names[h]).collect();
    let mut s = format!(
        "{:20}  {:11}  {:16}  {:12}  {}  {}",
        row.time,
        inspect::event_name(row.event),
        or_dash(&row.release),
        or_dash(commit),
        or_dash(&row.user),
        hosts.join(", ")
    );
    if let Some(d) = &row.detail {
        s.push_str(&format!("  ({d})"));
    }
    if let Some(u) = &row.build_url {
        s.push_str(&format!("  {u}"));
    }
    s
}

pub async fn run(app: &App, stage: &str, limit: usize) -> anyhow::Result<Outcome> {
    let config = app.load_config()?;
    // The releases script ends with the ledger, verbatim.
    let Some((names, paths, results)) =
        read_stage(app, &config, "history", stage, inspect::releases).await?
    else {
        return Ok(Outcome::Interrupted);
    };

    let mut ledgers: Vec<Vec<Entry>> = Vec::new();
    let mut unread = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let parsed = parse_output(&results[i], "ledger", inspect::parse_releases);
        match parsed {
            Ok(r) => {
                warn_bad_lines(name, &r.ledger.bad_lines, &paths[i].at(LEDGER_PATH));
                ledgers.push(r.ledger.entries);
            }
            Err(e) => {
                println!("[{name}] FAILED: {e}");
                unread.push(*name);
                ledgers.push(Vec::new());
            }
        }
    }
    let slices: Vec<&[Entry]> = ledgers.iter().map(|l| l.as_slice()).collect();
    let rows = merge(&slices);
    let shown = if limit == 0 {
        rows.len()
    } else {
        limit.min(rows.len())
    };
    let mut out: Vec<String> = rows[..shown].iter().map(|r| line(r, &names)).collect();
    out.push(String::new());
    out.push(if rows.is_empty() {
        format!("history {stage}: no events in the ledger")
    } else if shown < rows.len() {
        format!(
            "history {stage}: the newest {shown} of {} events (-n 0 shows all)",
            rows.len()
        )
    } else {
        format!(
            "history {stage}: {} event{}, newest first",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        )
    });
    Ok(print_report(out, "history", stage, &unread))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "20261124T190102Z";

    fn e(event: EventKind, host: &str, time: &str) -> Entry {
        Entry {
            event,
            release: A.into(),
            commit: "e02a4e2c4457aaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            digest: None,
            application: "shop".into(),
            stage: "staging".into(),
            host: host.into(),
            user: "tester".into(),
            build_url: None,
            detail: None,
            time: time.into(),
        }
    }

    const NAMES: [&str; 3] = ["fleet-1", "fleet-2", "fleet-3"];

    fn lines(ledgers: &[Vec<Entry>]) -> Vec<String> {
        let slices: Vec<&[Entry]> = ledgers.iter().map(|l| l.as_slice()).collect();
        merge(&slices).iter().map(|r| line(r, &NAMES)).collect()
    }

    #[test]
    fn the_same_event_on_several_hosts_is_one_line() {
        let host = |h: &str, t1: &str, t2: &str| {
            vec![
                e(EventKind::Published, h, t1),
                e(EventKind::Verified, h, t2),
            ]
        };
        let got = lines(&[
            host("fleet-1", "2026-11-24T19:01:02Z", "2026-11-24T19:01:03Z"),
            host("fleet-2", "2026-11-24T19:01:04Z", "2026-11-24T19:01:40Z"),
            host("fleet-3", "2026-11-24T19:01:02Z", "2026-11-24T19:01:03Z"),
        ]);
        assert_eq!(
            got,
            [
                "2026-11-24T19:01:03Z  verified     20261124T190102Z  e02a4e2c4457  tester  fleet-1, fleet-2, fleet-3",
                "2026-11-24T19:01:02Z  published    20261124T190102Z  e02a4e2c4457  tester  fleet-1, fleet-2, fleet-3",
            ]
        );
    }

    #[test]
    fn events_apart_or_different_stay_apart() {
        let mut rolled = e(EventKind::RolledBack, "fleet-1", "2026-11-24T19:05:00Z");
        rolled.detail = Some("to 20261120T080000Z".into());
        let mut other_user = e(EventKind::Verified, "fleet-2", "2026-11-24T19:01:05Z");
        other_user.user = "alice".into();
        let mut unlocked = e(EventKind::Unlocked, "fleet-3", "2026-11-24T19:06:00Z");
        unlocked.release.clear();
        unlocked.commit.clear();
        unlocked.detail = Some("forced unlock".into());
        unlocked.build_url = Some("https://ci/job/7/".into());
        let got = lines(&[
            vec![
                e(EventKind::Verified, "fleet-1", "2026-11-24T19:01:02Z"),
                rolled,
            ],
            vec![
                other_user,
                // More than a minute after fleet-1's: another line.
                e(EventKind::Verified, "fleet-2", "2026-11-24T19:02:03Z"),
            ],
            vec![unlocked, e(EventKind::Failed, "fleet-3", "not a time")],
        ]);
        assert_eq!(
            got,
            [
                "2026-11-24T19:06:00Z  unlocked     -                 -             tester  fleet-3  (forced unlock)  https://ci/job/7/",
                "2026-11-24T19:05:00Z  rolled_back  20261124T190102Z  e02a4e2c4457  tester  fleet-1  (to 20261120T080000Z)",
                "2026-11-24T19:02:03Z  verified     20261124T190102Z  e02a4e2c4457  tester  fleet-2",
                "2026-11-24T19:01:05Z  verified     20261124T190102Z  e02a4e2c4457  alice  fleet-2",
                "2026-11-24T19:01:02Z  verified     20261124T190102Z  e02a4e2c4457  tester  fleet-1",
                "not a time            failed       20261124T190102Z  e02a4e2c4457  tester  fleet-3",
            ]
        );
    }

    #[test]
    fn same_second_events_of_a_host_keep_their_order_newest_first() {
        let t = "2026-11-24T19:01:02Z";
        let got: Vec<EventKind> = merge(&[&[
            e(EventKind::RolledBack, "fleet-1", t),
            e(EventKind::Published, "fleet-1", t),
            e(EventKind::Verified, "fleet-1", t),
        ][..]])
        .iter()
        .map(|r| r.event)
        .collect();
        assert_eq!(
            got,
            [
                EventKind::Verified,
                EventKind::Published,
                EventKind::RolledBack
            ]
        );
        // The same event twice on one host is two lines.
        let twice = merge(&[&[
            e(EventKind::Verified, "fleet-1", t),
            e(EventKind::Verified, "fleet-1", t),
        ][..]]);
        assert_eq!(twice.len(), 2);
    }
}
