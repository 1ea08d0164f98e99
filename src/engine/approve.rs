//! `approve`: a release manager's decision on a release for a stage,
//! recorded in the ledger of every host of that stage.
//!
//! The protocol: a `candidate` step on every host of FROM (the stage's
//! `promote_from`) reads its releases and ledger; the candidate is the
//! release `current` and verified on all of them (`--release` and
//! `--commit` only pin it: another candidate refuses).
//! The decision — bound to application, both stages, release, commit,
//! digest and an expiry, signed with `ssh-keygen -Y sign` when a key is
//! given — is appended by an `approve` step on every host of TO.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::event::{Approval, Event};
use super::session::{parse_output, Ctx, HostEnd, Session};
use crate::config::{Config, Host};
use crate::engine::gate::{self, ApprovalLine, Candidate};
use crate::ledger::{Entry, EventKind};
use crate::outcome::{GateError, Outcome};
use crate::plan::commands::{self, HostPaths};
use crate::plan::host_step::{self, HostStep, SCRIPT_TIMEOUT};
use crate::plan::inspect::{self, HostReleases};
use crate::plan::planner::{self, Filters};
use crate::plan::Recipe;

/// Runs `script(host, paths)` on every host of `hosts` as step `step` and
/// returns each host's stdout; fails naming the hosts that could not be
/// read.
pub async fn read_all(
    ctx: &Ctx,
    config: &Config,
    recipe: Recipe,
    step: &str,
    hosts: &[&Host],
    script: impl Fn(&Host, &HostPaths) -> String,
) -> anyhow::Result<Vec<String>> {
    let mut session = Session::open(hosts, &config.ssh, ctx.clone()).await?;
    let s = HostStep {
        recipe,
        stage: String::new(),
        name: step.to_string(),
        timeout: SCRIPT_TIMEOUT,
        output: false,
    };
    let plan = host_step::on_every_host(&s, hosts, |i| {
        script(hosts[i], &HostPaths::of(config, hosts[i]))
    });
    let runs = session.run_hosts(&plan).await;
    session.close().await;
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        match parse_output(r, step, |s| Some(s.to_string())) {
            Ok(s) => out.push(s),
            Err(e) => bad.push(format!("`{}`: {e}", hosts[i].name)),
        }
    }
    if !bad.is_empty() {
        anyhow::bail!("cannot read every host: {}", bad.join("; "));
    }
    Ok(out)
}

/// The candidate on FROM: `current` and verified on every host, its
/// REVISION the verified commit.
pub async fn find_candidate(
    ctx: &Ctx,
    config: &Config,
    recipe: Recipe,
    from: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Candidate> {
    let (_, hosts) = planner::select_hosts(config, from, &Filters::default())?;
    let outs = read_all(ctx, config, recipe, "candidate", &hosts, |_, p| {
        inspect::releases(p)
    })
    .await?;
    let parsed: Vec<HostReleases> = outs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            inspect::parse_releases(o)
                .with_context(|| format!("unreadable answer from `{}`", hosts[i].name))
        })
        .collect::<anyhow::Result<_>>()?;
    let pairs: Vec<(&str, &HostReleases)> = hosts
        .iter()
        .zip(parsed.iter())
        .map(|(h, p)| (h.name.as_str(), p))
        .collect();
    gate::candidate(from, &pairs, None, now).map_err(|e| GateError(e).into())
}

/// Who decided what, and until when.
pub struct Verdict<'a> {
    pub user: &'a str,
    pub rejected: bool,
    pub expires: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub detail: Option<String>,
}

/// The ledger line of a decision on `cand` for `to` (its host is filled
/// in per host when it is written). Pure.
pub fn approval_line(config: &Config, cand: &Candidate, to: &str, v: Verdict<'_>) -> ApprovalLine {
    ApprovalLine {
        entry: Entry {
            event: if v.rejected {
                EventKind::Rejected
            } else {
                EventKind::Approved
            },
            release: cand.release.clone(),
            commit: cand.commit.clone(),
            digest: cand.digest.clone(),
            application: config.application.clone(),
            stage: to.to_string(),
            host: String::new(),
            user: v.user.to_string(),
            build_url: None,
            detail: v.detail,
            time: v.now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
        from_stage: cand.from_stage.clone(),
        expires: v.expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        signature: None,
    }
}

/// Signs an approval's payload with `ssh-keygen -Y sign`, in its record
/// type's namespace.
pub fn sign(key: &Path, a: &ApprovalLine) -> anyhow::Result<String> {
    super::promote::sign_text(key, &gate::payload(a), gate::namespace(a.entry.event))
}

/// Appends `make(host)` (one line per host of `to`) to TO's ledgers.
pub async fn record(
    ctx: &Ctx,
    config: &Config,
    recipe: Recipe,
    to: &str,
    make: impl Fn(&Host) -> ApprovalLine,
) -> anyhow::Result<()> {
    let (_, hosts) = planner::select_hosts(config, to, &Filters::default())?;
    read_all(ctx, config, recipe, "approve", &hosts, |host, p| {
        commands::ledger_append_raw(
            p,
            &serde_json::to_string(&make(host)).expect("ledger lines serialise"),
        )
    })
    .await
    .map(|_| ())
}

/// What `shipit approve` was asked.
pub struct ApproveRun<'a> {
    pub config: &'a Config,
    pub from: &'a str,
    pub to: &'a str,
    /// The release the release manager saw: refused when the candidate is
    /// another one.
    pub release: Option<&'a str>,
    pub user: &'a str,
    pub rejected: bool,
    pub ttl: Duration,
    pub now: DateTime<Utc>,
    pub detail: Option<String>,
    pub sign_key: Option<&'a Path>,
    /// The commit the release manager saw: refused when the candidate is
    /// another one.
    pub commit: Option<&'a str>,
}

/// `given` (from `--commit`) names `commit`: the whole id, or a prefix of
/// at least 7 characters.
pub fn pinned_commit_matches(given: &str, commit: &str) -> bool {
    given.len() >= 7 && commit.starts_with(given)
}

/// The decision as the event reports it. Pure.
pub fn approval(line: &ApprovalLine, signed: bool) -> Approval {
    Approval {
        decision: if line.entry.event == EventKind::Rejected {
            "rejected"
        } else {
            "approved"
        }
        .into(),
        release: line.entry.release.clone(),
        commit: line.entry.commit.clone(),
        from_stage: line.from_stage.clone(),
        stage: line.entry.stage.clone(),
        user: line.entry.user.clone(),
        signed,
        expires: line.expires.clone(),
    }
}

/// Finds the candidate, signs the decision when asked, records it.
async fn decide(ctx: &Ctx, a: &ApproveRun<'_>) -> anyhow::Result<Approval> {
    let cand = find_candidate(ctx, a.config, Recipe::Approve, a.from, a.now).await?;
    if let Some(r) = a.release.filter(|r| *r != cand.release) {
        return Err(GateError(format!(
            "the candidate from `{}` is release {} (commit {}), not release `{r}`: nothing was recorded",
            a.from, cand.release, cand.commit
        ))
        .into());
    }
    if let Some(c) = a.commit {
        if !pinned_commit_matches(c, &cand.commit) {
            return Err(GateError(format!(
                "the candidate from `{}` is release {} (commit {}), not commit `{c}`: nothing was recorded",
                a.from, cand.release, cand.commit
            ))
            .into());
        }
    }
    let expires = a.now + chrono::Duration::from_std(a.ttl).unwrap_or_default();
    let template = approval_line(
        a.config,
        &cand,
        a.to,
        Verdict {
            user: a.user,
            rejected: a.rejected,
            expires,
            now: a.now,
            detail: a.detail.clone(),
        },
    );
    let signature = match a.sign_key {
        Some(k) => Some(sign(k, &template)?),
        None => None,
    };
    record(ctx, a.config, Recipe::Approve, a.to, |h| {
        let mut l = template.clone();
        l.entry.host = h.name.to_string();
        l.signature = signature.clone();
        l
    })
    .await?;
    Ok(approval(&template, signature.is_some()))
}

/// `shipit approve`: reports the decision, or why it was not recorded,
/// and always ends with a summary.
pub async fn run(ctx: Ctx, a: ApproveRun<'_>) -> anyhow::Result<Outcome> {
    let began = std::time::Instant::now();
    let (_, hosts) = planner::select_hosts(a.config, a.to, &Filters::default())?;
    let names: Vec<String> = hosts.iter().map(|h| h.name.to_string()).collect();
    ctx.send(Event::RunStarted {
        recipe: Recipe::Approve.to_string(),
        stage: a.to.to_string(),
        release: String::new(),
        commit: String::new(),
        reference: String::new(),
        hosts: names.clone(),
    });
    let (ends, headline, outcome) = match decide(&ctx, &a).await {
        Ok(ap) => {
            let line = format!(
                "{} release {} for `{}` recorded on {} host{}",
                ap.decision,
                ap.release,
                a.to,
                names.len(),
                super::session::plural(names.len())
            );
            ctx.send(Event::Approval(ap));
            let ends = names
                .iter()
                .map(|_| HostEnd {
                    ok: true,
                    state: "recorded".into(),
                })
                .collect::<Vec<_>>();
            (ends, line, Outcome::Success)
        }
        Err(e) => {
            let (verdict, outcome) = if e.is::<GateError>() {
                ("refused", Outcome::GateRefused)
            } else {
                ("FAILED", Outcome::Failed)
            };
            let line = format!("approve {}: {verdict} — {e:#}", a.to);
            ctx.send(Event::Report(vec![line.clone()]));
            let ends = names
                .iter()
                .map(|_| HostEnd {
                    ok: false,
                    state: "not recorded".into(),
                })
                .collect::<Vec<_>>();
            (ends, line, outcome)
        }
    };
    ctx.send(Event::Finished(super::session::summary(
        "approve",
        a.to,
        &names,
        &ends,
        &[],
        headline,
        outcome,
        began.elapsed(),
    )));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_says_what_was_decided() {
        let line = ApprovalLine {
            entry: Entry {
                event: EventKind::Rejected,
                release: "R".into(),
                commit: "c0ffee".into(),
                digest: None,
                application: "shop".into(),
                stage: "production".into(),
                host: String::new(),
                user: "carol".into(),
                build_url: None,
                detail: Some("breaks checkout".into()),
                time: "2026-11-24T19:01:02Z".into(),
            },
            from_stage: "staging".into(),
            expires: "2026-11-25T19:01:02Z".into(),
            signature: None,
        };
        let a = approval(&line, true);
        assert_eq!(a.decision, "rejected");
        assert_eq!(
            (a.from_stage.as_str(), a.stage.as_str()),
            ("staging", "production")
        );
        assert!(a.signed);
        assert_eq!(a.expires, "2026-11-25T19:01:02Z");
    }

    #[test]
    fn a_pinned_commit_is_the_whole_id_or_a_long_enough_prefix() {
        let c = "0f3c9e1b2c3d4e5f60718293a4b5c6d7e8f90a1b";
        assert!(pinned_commit_matches(c, c));
        assert!(pinned_commit_matches("0f3c9e1", c));
        assert!(!pinned_commit_matches("0f3c9e", c));
        assert!(!pinned_commit_matches("0f3c9e2", c));
    }
}
