//! `shipit releases STAGE`: per host, the releases, which one is current,
//! and each one's status from the host's ledger; then where hosts disagree.
//!
//! A report: exits 0 even when hosts disagree, 1 when a host could not be
//! read. Ledger lines that do not parse are skipped with a warning on
//! stderr naming the host and the line numbers.

use super::on_hosts::{parse_output, print_report, read_stage};
use super::App;
use crate::ledger::LEDGER_PATH;
use crate::outcome::Outcome;
use crate::plan::inspect::{self, HostReleases};

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// The table of one host's releases, newest first, each line starting with
/// `[host]`.
pub fn table(host: &str, r: &HostReleases) -> Vec<String> {
    let mut v = Vec::new();
    if r.releases.is_empty() {
        v.push(format!(
            "[{host}] no releases{}",
            if r.deploy_to_exists {
                ""
            } else {
                " (deploy_to does not exist)"
            }
        ));
    } else {
        v.push(format!(
            "[{host}] {:16}  {:11}  commit",
            "release", "status"
        ));
        for (id, revision) in r.releases.iter().rev() {
            let entry = inspect::release_status(&r.ledger.entries, id);
            let status =
                entry.map_or_else(|| "unknown".to_string(), |e| inspect::event_name(e.event));
            let commit = if !revision.is_empty() {
                short(revision)
            } else {
                entry.map_or("-", |e| short(&e.commit))
            };
            let mut line = format!("[{host}] {id:16}  {status:11}  {commit:12}");
            if r.current.as_deref() == Some(id.as_str()) {
                line.push_str("  current");
            }
            v.push(line.trim_end().to_string());
        }
    }
    match &r.current {
        None => v.push(format!("[{host}] no current release")),
        Some(c) if !r.releases.iter().any(|(id, _)| id == c) => v.push(format!(
            "[{host}] current points at `{c}`, which is not a release here"
        )),
        Some(_) => {}
    }
    v
}

/// Warns on stderr about ledger lines that did not parse (and were
/// skipped), naming the host, the line numbers and the file.
pub fn warn_bad_lines(host: &str, bad_lines: &[usize], ledger_path: &str) {
    if bad_lines.is_empty() {
        return;
    }
    eprintln!(
        "shipit: warning: `{host}`: skipped line{} {} of `{ledger_path}`: not ledger records",
        if bad_lines.len() == 1 { "" } else { "s" },
        bad_lines
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
}

pub async fn run(app: &App, stage: &str) -> anyhow::Result<Outcome> {
    let config = app.load_config()?;
    let Some((names, paths, results)) =
        read_stage(app, &config, "releases", stage, inspect::releases).await?
    else {
        return Ok(Outcome::Interrupted);
    };

    let mut out = Vec::new();
    let mut read: Vec<(&str, HostReleases)> = Vec::new();
    let mut unread = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let parsed = parse_output(&results[i], "releases", inspect::parse_releases);
        match parsed {
            Ok(r) => {
                warn_bad_lines(name, &r.ledger.bad_lines, &paths[i].at(LEDGER_PATH));
                out.extend(table(name, &r));
                read.push((name, r));
            }
            Err(e) => {
                out.push(format!("[{name}] FAILED: {e}"));
                unread.push(*name);
            }
        }
    }

    out.push(String::new());
    let pairs: Vec<(&str, &HostReleases)> = read.iter().map(|(n, r)| (*n, r)).collect();
    let disagree = inspect::disagreements(&pairs);
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
    Ok(print_report(out, "releases", stage, &unread))
}
