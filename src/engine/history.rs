//! The stage's history: every host's ledger merged into one list, newest
//! first. The same event recorded on several hosts (same event, release,
//! commit, user, detail and build URL, within a minute) is one entry that
//! lists the hosts. Pure.

use chrono::{DateTime, Utc};

use super::event::HistoryEntry;
use crate::ledger::{Entry, EventKind};
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

/// A row as the event that reports it; `names[i]` is host `i`'s name.
pub fn entry(row: &Row, names: &[String]) -> HistoryEntry {
    HistoryEntry {
        time: row.time.clone(),
        kind: inspect::event_name(row.event),
        release: row.release.clone(),
        commit: row.commit.clone(),
        user: row.user.clone(),
        detail: row.detail.clone(),
        build_url: row.build_url.clone(),
        hosts: row.hosts.iter().map(|&h| names[h].clone()).collect(),
    }
}

/// The line after the entries: how many there are, and how many shown.
pub fn closing_line(stage: &str, shown: usize, total: usize) -> String {
    if total == 0 {
        format!("history {stage}: no events in the ledger")
    } else if shown < total {
        format!("history {stage}: the newest {shown} of {total} events (-n 0 shows all)")
    } else {
        format!(
            "history {stage}: {total} event{}, newest first",
            if total == 1 { "" } else { "s" }
        )
    }
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

    /// Each merged row as `time event user hosts (detail)`.
    fn lines(ledgers: &[Vec<Entry>]) -> Vec<String> {
        let slices: Vec<&[Entry]> = ledgers.iter().map(|l| l.as_slice()).collect();
        let names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
        merge(&slices)
            .iter()
            .map(|r| {
                let e = entry(r, &names);
                let mut s = format!("{} {} {} {}", e.time, e.kind, e.user, e.hosts.join(", "));
                if let Some(d) = &e.detail {
                    s.push_str(&format!(" ({d})"));
                }
                s
            })
            .collect()
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
                "2026-11-24T19:01:03Z verified tester fleet-1, fleet-2, fleet-3",
                "2026-11-24T19:01:02Z published tester fleet-1, fleet-2, fleet-3",
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
                "2026-11-24T19:06:00Z unlocked tester fleet-3 (forced unlock)",
                "2026-11-24T19:05:00Z rolled_back tester fleet-1 (to 20261120T080000Z)",
                "2026-11-24T19:02:03Z verified tester fleet-2",
                "2026-11-24T19:01:05Z verified alice fleet-2",
                "2026-11-24T19:01:02Z verified tester fleet-1",
                "not a time failed tester fleet-3",
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

    #[test]
    fn the_closing_line_counts_the_entries() {
        assert_eq!(
            closing_line("s", 0, 0),
            "history s: no events in the ledger"
        );
        assert_eq!(
            closing_line("s", 2, 5),
            "history s: the newest 2 of 5 events (-n 0 shows all)"
        );
        assert_eq!(closing_line("s", 1, 1), "history s: 1 event, newest first");
    }
}
