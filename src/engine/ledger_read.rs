//! `releases` and `history`: what the hosts of a stage hold and recorded.
//!
//! The protocol: one `releases` step per host that lists the release dirs
//! with their `REVISION`, `current`, and the ledger verbatim; changes
//! nothing. `releases` reports each host's releases and where hosts
//! disagree; `history` merges the ledgers (see [`super::history`]). Both
//! exit 0 when hosts disagree (a report), 1 when a host could not be read.
//! Ledger lines that do not parse are skipped with a warning naming the
//! host, the line numbers and the file.

use super::event::{Event, Fact, ReleaseRow};
use super::history;
use super::session::{parse_output, Ctx, HostEnd, HostRun, Session};
use crate::config::{Config, Host};
use crate::ledger::{Entry, LEDGER_PATH};
use crate::outcome::Outcome;
use crate::plan::commands::HostPaths;
use crate::plan::host_step::{self, HostStep, SCRIPT_TIMEOUT};
use crate::plan::inspect::{self, HostReleases};
use crate::plan::Recipe;

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// A host's releases as rows, newest first: the status is the ledger's
/// last word on each, the commit its `REVISION` (else the ledger's).
pub fn rows(r: &HostReleases) -> Vec<ReleaseRow> {
    r.releases
        .iter()
        .rev()
        .map(|(id, revision)| {
            let entry = inspect::release_status(&r.ledger.entries, id);
            ReleaseRow {
                id: id.clone(),
                status: entry
                    .map_or_else(|| "unknown".to_string(), |e| inspect::event_name(e.event)),
                commit: if !revision.is_empty() {
                    short(revision).to_string()
                } else {
                    entry.map_or("-", |e| short(&e.commit)).to_string()
                },
                current: r.current.as_deref() == Some(id.as_str()),
            }
        })
        .collect()
}

pub use crate::ledger::bad_lines_warning;

/// The closing lines of `releases` over the hosts that could be read
/// (`read`, in stage order), and the names of those that could not.
pub fn releases_lines(stage: &str, read: &[(&str, &HostReleases)], unread: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let disagree = inspect::disagreements(read);
    let n = read.len();
    if disagree.is_empty() && n > 0 {
        let current = match read[0].1.current.as_deref() {
            Some(c) => format!("current is {c}"),
            None => "no current release".to_string(),
        };
        if n == 1 {
            out.push(format!("releases {stage}: 1 host read; {current}"));
        } else {
            out.push(format!("releases {stage}: {n} hosts agree — {current}"));
        }
    } else if !disagree.is_empty() {
        out.extend(disagree);
        out.push(format!(
            "releases {stage}: {n} hosts read; they disagree (see above)"
        ));
    }
    out.extend(unread_line("releases", stage, unread));
    out
}

/// `{command} {stage}: FAILED — could not read a, b`, when some could not.
pub fn unread_line(command: &str, stage: &str, unread: &[&str]) -> Option<String> {
    (!unread.is_empty()).then(|| {
        format!(
            "{command} {stage}: FAILED — could not read {}",
            unread.join(", ")
        )
    })
}

/// What a run of the `releases` script gave on each host.
struct Read {
    session: Session,
    names: Vec<String>,
    parsed: Vec<Result<HostReleases, String>>,
}

/// Starts the run, reads every host, sends the warnings about bad ledger
/// lines; `None` after an interrupt (the summary is sent).
async fn read(
    ctx: &Ctx,
    config: &Config,
    recipe: Recipe,
    stage: &str,
    hosts: &[&Host],
) -> anyhow::Result<Option<Read>> {
    let names: Vec<String> = hosts.iter().map(|h| h.name.to_string()).collect();
    ctx.send(Event::RunStarted {
        recipe: recipe.to_string(),
        stage: stage.to_string(),
        release: String::new(),
        commit: String::new(),
        reference: String::new(),
        hosts: names.clone(),
    });
    let mut session = Session::open(hosts, &config.ssh, ctx.clone()).await?;
    let paths: Vec<HostPaths> = hosts.iter().map(|h| HostPaths::of(config, h)).collect();
    let step = HostStep {
        recipe,
        stage: stage.to_string(),
        name: "releases".into(),
        timeout: SCRIPT_TIMEOUT,
        output: false,
    };
    let plan = host_step::on_every_host(&step, hosts, |i| inspect::releases(&paths[i]));
    let runs = session.run_hosts(&plan).await;
    session.close().await;
    if ctx.interrupted() {
        session.finish_interrupted(
            &recipe.to_string(),
            stage,
            &runs,
            format!("{recipe} {stage}: interrupted"),
        );
        return Ok(None);
    }
    let what = if recipe == Recipe::History {
        "ledger"
    } else {
        "releases"
    };
    let parsed: Vec<Result<HostReleases, String>> = runs
        .iter()
        .map(|r: &HostRun| parse_output(r, what, inspect::parse_releases))
        .collect();
    for (i, p) in parsed.iter().enumerate() {
        if let Ok(r) = p {
            let path = paths[i].at(LEDGER_PATH);
            if let Some(w) = bad_lines_warning(&names[i], &r.ledger.bad_lines, &path) {
                ctx.send(Event::Warning(w));
            }
        }
    }
    Ok(Some(Read {
        session,
        names,
        parsed,
    }))
}

fn ends(
    parsed: &[Result<HostReleases, String>],
    ok_state: impl Fn(&HostReleases) -> String,
) -> Vec<HostEnd> {
    parsed
        .iter()
        .map(|p| match p {
            Ok(r) => HostEnd {
                ok: true,
                state: ok_state(r),
            },
            Err(e) => HostEnd {
                ok: false,
                state: format!("not read: {e}"),
            },
        })
        .collect()
}

/// `shipit releases`: per host, the releases, which one is current, and
/// each one's status; then where hosts disagree.
pub async fn releases(
    ctx: Ctx,
    config: &Config,
    stage: &str,
    hosts: &[&Host],
) -> anyhow::Result<Outcome> {
    let Some(Read {
        session,
        names,
        parsed,
    }) = read(&ctx, config, Recipe::Releases, stage, hosts).await?
    else {
        return Ok(Outcome::Interrupted);
    };
    let mut read_ok: Vec<(&str, &HostReleases)> = Vec::new();
    let mut unread = Vec::new();
    for (i, p) in parsed.iter().enumerate() {
        let fact = match p {
            Ok(r) => {
                read_ok.push((&names[i], r));
                Fact::Releases {
                    releases: rows(r),
                    current: r.current.clone(),
                    deploy_to_exists: r.deploy_to_exists,
                }
            }
            Err(e) => {
                unread.push(names[i].as_str());
                Fact::Unread { reason: e.clone() }
            }
        };
        ctx.send(Event::Fact {
            host: names[i].clone(),
            fact,
        });
    }
    let lines = releases_lines(stage, &read_ok, &unread);
    let outcome = if unread.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failed
    };
    let headline = lines.last().cloned().unwrap_or_default();
    ctx.send(Event::Report(lines));
    let ends = ends(&parsed, |r| match &r.current {
        Some(c) => format!("on {c}"),
        None => "no current release".into(),
    });
    Ok(session.finish("releases", stage, &ends, headline, outcome))
}

/// `shipit history`: the stage's ledger, every host's merged into one
/// list, newest first; the newest `limit` events (0: all).
pub async fn history(
    ctx: Ctx,
    config: &Config,
    stage: &str,
    hosts: &[&Host],
    limit: usize,
) -> anyhow::Result<Outcome> {
    let Some(Read {
        session,
        names,
        parsed,
    }) = read(&ctx, config, Recipe::History, stage, hosts).await?
    else {
        return Ok(Outcome::Interrupted);
    };
    let mut unread = Vec::new();
    let mut ledgers: Vec<&[Entry]> = Vec::new();
    for (i, p) in parsed.iter().enumerate() {
        match p {
            Ok(r) => ledgers.push(&r.ledger.entries),
            Err(e) => {
                unread.push(names[i].as_str());
                ledgers.push(&[]);
                ctx.send(Event::Fact {
                    host: names[i].clone(),
                    fact: Fact::Unread { reason: e.clone() },
                });
            }
        }
    }
    let rows = history::merge(&ledgers);
    let shown = if limit == 0 {
        rows.len()
    } else {
        limit.min(rows.len())
    };
    for row in &rows[..shown] {
        ctx.send(Event::History(history::entry(row, &names)));
    }
    let mut lines = vec![history::closing_line(stage, shown, rows.len())];
    lines.extend(unread_line("history", stage, &unread));
    let outcome = if unread.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failed
    };
    let headline = lines.last().cloned().unwrap_or_default();
    ctx.send(Event::Report(lines));
    let ends = ends(&parsed, |r| {
        format!(
            "{} ledger record{}",
            r.ledger.entries.len(),
            if r.ledger.entries.len() == 1 { "" } else { "s" }
        )
    });
    Ok(session.finish("history", stage, &ends, headline, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{test_entry, EventKind, Parsed};

    fn host(releases: &[(&str, &str)], current: Option<&str>, entries: Vec<Entry>) -> HostReleases {
        HostReleases {
            deploy_to_exists: true,
            releases: releases
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            current: current.map(str::to_string),
            ledger: Parsed {
                entries,
                bad_lines: vec![],
            },
        }
    }

    const A: &str = "20261120T080000Z";
    const B: &str = "20261124T190102Z";

    #[test]
    fn rows_are_newest_first_with_status_commit_and_current() {
        let mut old = test_entry(EventKind::Verified, A);
        old.commit = "aaaaaaaaaaaaaaaaaaaa".into();
        let r = host(
            &[(A, ""), (B, "bbbbbbbbbbbbbbbbbbbb")],
            Some(B),
            vec![old, test_entry(EventKind::Published, B)],
        );
        assert_eq!(
            rows(&r),
            vec![
                ReleaseRow {
                    id: B.into(),
                    status: "published".into(),
                    commit: "bbbbbbbbbbbb".into(),
                    current: true,
                },
                ReleaseRow {
                    id: A.into(),
                    status: "verified".into(),
                    commit: "aaaaaaaaaaaa".into(),
                    current: false,
                },
            ]
        );
        let bare = host(&[(A, "")], None, vec![]);
        assert_eq!(rows(&bare)[0].status, "unknown");
        assert_eq!(rows(&bare)[0].commit, "-");
    }

    #[test]
    fn closing_lines_say_whether_hosts_agree_and_who_was_not_read() {
        let one = host(&[(B, "c")], Some(B), vec![]);
        let other = host(&[(A, "c"), (B, "c")], Some(A), vec![]);
        assert_eq!(
            releases_lines("staging", &[("a", &one), ("b", &one)], &[]),
            vec![format!("releases staging: 2 hosts agree — current is {B}")]
        );
        assert_eq!(
            releases_lines("staging", &[("a", &one)], &["b"]),
            vec![
                format!("releases staging: 1 host read; current is {B}"),
                "releases staging: FAILED — could not read b".to_string(),
            ]
        );
        let l = releases_lines("staging", &[("a", &one), ("b", &other)], &[]);
        assert_eq!(
            l.last().unwrap(),
            "releases staging: 2 hosts read; they disagree (see above)"
        );
        assert!(l[0].starts_with("hosts disagree: current is"), "{l:?}");
    }

    #[test]
    fn bad_ledger_lines_are_named() {
        assert_eq!(bad_lines_warning("a", &[], "/l"), None);
        assert_eq!(
            bad_lines_warning("a", &[3, 7], "/srv/.shipit/ledger.jsonl").unwrap(),
            "`a`: skipped lines 3, 7 of `/srv/.shipit/ledger.jsonl`: not ledger records"
        );
    }
}
