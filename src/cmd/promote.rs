//! `shipit promote [FROM] TO`: production gets exactly the release
//! verified on staging, after its gate.

use std::io::{BufRead, Write};
use std::process::Command as Process;

use anyhow::Context;
use chrono::Utc;

use super::deploy::{self, Promotion};
use super::App;
use crate::config::{Config, Stage};
use crate::engine::approve::{approval_line, find_candidate, read_all, record, Verdict};
use crate::engine::gate::{self, ApprovalLine, Candidate, Decision};
use crate::engine::session::Ctx;
use crate::engine::EventSink;
use crate::git;
use crate::ledger::EventKind;
use crate::outcome::{GateError, Outcome, UsageError};
use crate::plan::commands::HostPaths;
use crate::plan::planner::{self, Filters};
use crate::plan::Recipe;

/// What TO's hosts say: where they stand, the decisions recorded there,
/// and the allowed signers file when the gate names one.
struct TargetState {
    current: Option<String>,
    current_commit: Option<String>,
    decisions: Vec<ApprovalLine>,
    signers: Option<Result<String, String>>,
}

const LEDGER_MARK: &str = "--- ledger";
const SIGNERS_MARK: &str = "--- signers";

/// Reads a target host: `current`, its commit, the signers file, the
/// ledger. Changes nothing.
fn target_script(p: &HostPaths, signers: Option<&str>) -> String {
    crate::plan::inspect::promote_target(p, signers, SIGNERS_MARK, LEDGER_MARK)
}

fn parse_target(stdout: &str) -> Option<TargetState> {
    let (head, ledger) = stdout.split_once(&format!("{LEDGER_MARK}\n"))?;
    let (head, signers) = match head.split_once(SIGNERS_MARK) {
        Some((h, rest)) => {
            let s = if let Some(content) = rest.strip_prefix('\n') {
                Ok(content.to_string())
            } else {
                Err("missing".to_string())
            };
            (h, Some(s))
        }
        None => (head, None),
    };
    let mut st = TargetState {
        current: None,
        current_commit: None,
        decisions: Vec::new(),
        signers,
    };
    for line in head.lines() {
        if let Some(x) = line.strip_prefix("current_commit:") {
            st.current_commit = Some(x.trim().to_string());
        } else if let Some(x) = line.strip_prefix("current:") {
            st.current = Some(x.rsplit('/').next().unwrap_or(x).to_string());
        }
    }
    st.decisions = ledger
        .lines()
        .filter_map(|l| serde_json::from_str::<ApprovalLine>(l).ok())
        .filter(|a| matches!(a.entry.event, EventKind::Approved | EventKind::Rejected))
        .collect();
    Some(st)
}

pub(super) fn stage<'c>(config: &'c Config, name: &str) -> anyhow::Result<&'c Stage> {
    config.stage(name).ok_or_else(|| {
        UsageError(format!(
            "unknown stage `{name}`, expected one of {}",
            config
                .stages
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()
    })
}

/// FROM for a promotion into `to`: given, or `to`'s `promote_from`.
pub(super) fn from_stage(config: &Config, from: Option<&str>, to: &str) -> anyhow::Result<String> {
    let t = stage(config, to)?;
    let from = match (from, &t.promote_from) {
        (Some(f), _) => f.to_string(),
        (None, Some(f)) => f.clone(),
        (None, None) => {
            return Err(UsageError(format!(
                "stage `{to}` has no `promote_from`: name the stage to promote from, `shipit promote STAGE {to}`"
            ))
            .into())
        }
    };
    stage(config, &from)?;
    if from == to {
        return Err(UsageError(format!("cannot promote `{to}` from itself")).into());
    }
    Ok(from)
}

/// The reads and records of a promotion, before its deploy reports: not
/// reported (their failures end the command with an error).
fn unreported(app: &App) -> Ctx {
    let (events, _) = EventSink::new();
    Ctx {
        events,
        redactor: std::sync::Arc::new(app.base_redactor()),
        parallel: app.global.parallel,
        shutdown: app.shutdown.clone(),
    }
}

async fn read_targets(app: &App, config: &Config, to: &str) -> anyhow::Result<Vec<TargetState>> {
    let t = stage(config, to)?;
    let signers = t.gate.as_ref().and_then(|g| g.allowed_signers.clone());
    let (_, hosts) = planner::select_hosts(config, to, &Filters::default())?;
    let outs = read_all(
        &unreported(app),
        config,
        Recipe::Deploy,
        "read_target",
        &hosts,
        |_, p| target_script(p, signers.as_deref()),
    )
    .await?;
    outs.iter()
        .enumerate()
        .map(|(i, o)| {
            parse_target(o).with_context(|| format!("unreadable answer from `{}`", hosts[i].name))
        })
        .collect()
}

/// Checks a signature with `ssh-keygen -Y verify` against `signers`.
fn verify_signature(signers: &str, a: &ApprovalLine) -> bool {
    let Some(sig) = &a.signature else {
        return false;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let (sf, sg, pl) = (
        dir.path().join("allowed_signers"),
        dir.path().join("sig"),
        dir.path().join("payload"),
    );
    if std::fs::write(&sf, signers).is_err()
        || std::fs::write(&sg, sig).is_err()
        || std::fs::write(&pl, gate::payload(a)).is_err()
    {
        return false;
    }
    let Ok(input) = std::fs::File::open(&pl) else {
        return false;
    };
    Process::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(&sf)
        .args(["-I", &a.entry.user, "-n", gate::SIGNATURE_NAMESPACE, "-s"])
        .arg(&sg)
        .stdin(input)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The gate's view of the decisions recorded on TO for `cand`.
fn decisions(
    config: &Config,
    to: &str,
    cand: &Candidate,
    targets: &[TargetState],
) -> Result<Vec<Decision>, String> {
    let per_host: Vec<Vec<ApprovalLine>> = targets.iter().map(|t| t.decisions.clone()).collect();
    let lines = gate::decisions_for(cand, to, &per_host);
    let signed = config
        .stage(to)
        .and_then(|s| s.gate.as_ref())
        .and_then(|g| g.allowed_signers.clone());
    let signers = match &signed {
        None => None,
        Some(path) => {
            let mut contents: Vec<&String> = Vec::new();
            for t in targets {
                match &t.signers {
                    Some(Ok(c)) => contents.push(c),
                    _ => {
                        return Err(format!(
                            "`{to}` verifies approvals against `{path}`, which is missing on a host of `{to}`: install it there (root-owned)"
                        ))
                    }
                }
            }
            if contents.windows(2).any(|w| w[0] != w[1]) {
                return Err(format!(
                    "`{path}` differs between the hosts of `{to}`: make it the same everywhere"
                ));
            }
            contents.first().map(|c| c.to_string())
        }
    };
    Ok(lines
        .iter()
        .map(|a| {
            let ok = signers.as_ref().map(|s| verify_signature(s, a));
            gate::to_decision(a, ok)
        })
        .collect())
}

fn short(c: &str) -> &str {
    &c[..c.len().min(12)]
}

/// The commits between `from` (exclusive) and `to`, newest first, at most
/// `max`, from the local repository (or shipit's mirror of a remote one).
fn changes(app: &App, config: &Config, from: Option<&str>, to: &str, max: usize) -> Vec<String> {
    let path = if git::is_remote(&config.repository) {
        match git::local_mirror(&config.repository, &app.env) {
            Ok(p) => p,
            Err(_) => return Vec::new(),
        }
    } else {
        std::path::PathBuf::from(&config.repository)
    };
    let Ok(repo) = git2::Repository::open(path) else {
        return Vec::new();
    };
    let Ok(mut walk) = repo.revwalk() else {
        return Vec::new();
    };
    let Ok(to) = git2::Oid::from_str(to) else {
        return Vec::new();
    };
    if walk.push(to).is_err() {
        return Vec::new();
    }
    if let Some(f) = from.and_then(|f| git2::Oid::from_str(f).ok()) {
        let _ = walk.hide(f);
    }
    walk.flatten()
        .take(max)
        .filter_map(|oid| repo.find_commit(oid).ok())
        .map(|c| {
            format!(
                "{} {} ({})",
                short(&c.id().to_string()),
                String::from_utf8_lossy(c.summary_bytes().unwrap_or_default()),
                c.author().name().unwrap_or("")
            )
        })
        .collect()
}

fn subject(app: &App, config: &Config, commit: &str) -> String {
    changes(app, config, None, commit, 1)
        .into_iter()
        .next()
        .map(|l| l.split_once(' ').map(|(_, s)| s.to_string()).unwrap_or(l))
        .unwrap_or_default()
}

/// Options of `shipit promote`.
pub struct PromoteArgs<'a> {
    pub from: Option<&'a str>,
    pub to: &'a str,
    pub yes: bool,
}

pub async fn promote(app: &App, args: PromoteArgs<'_>) -> anyhow::Result<Outcome> {
    let config = app.load_config()?;
    let to = args.to;
    let from = from_stage(&config, args.from, to)?;
    let interactive = app.interactive && !args.yes;
    if !app.interactive && !args.yes {
        return Err(GateError(format!(
            "`shipit promote` asks for confirmation, and there is no terminal to ask on: pass --yes (the gate of `{to}` still needs its recorded approvals)"
        ))
        .into());
    }
    let promoter = app.user();
    let cand = find_candidate(&unreported(app), &config, Recipe::Deploy, &from, None).await?;
    let targets = read_targets(app, &config, to).await?;
    let gate_cfg = stage(&config, to)?.gate.clone();
    let mut decided = decisions(&config, to, &cand, &targets).map_err(GateError)?;
    let now = Utc::now();
    let mut verdict = gate::evaluate(to, gate_cfg.as_ref(), &cand, &decided, &promoter, now);

    if interactive {
        let current = targets.first().and_then(|t| t.current.clone());
        let current_commit = targets.first().and_then(|t| t.current_commit.clone());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "promote `{from}` -> `{to}`");
        let _ = writeln!(
            out,
            "  candidate: release {} commit {} {}",
            cand.release,
            short(&cand.commit),
            subject(app, &config, &cand.commit)
        );
        let _ = writeln!(
            out,
            "  deployed to `{from}` by {} at {}; smoke test passed on every host (last at {})",
            cand.deployed_by,
            cand.deployed_at,
            cand.verified_at.format("%Y-%m-%dT%H:%M:%SZ")
        );
        if let Some(d) = &cand.digest {
            let _ = writeln!(out, "  archive: {d}");
        }
        let _ = writeln!(
            out,
            "  `{to}` is on: {}",
            match (&current, &current_commit) {
                (Some(c), Some(cc)) => format!("release {c} commit {}", short(cc)),
                _ => "nothing yet".into(),
            }
        );
        let list = changes(app, &config, current_commit.as_deref(), &cand.commit, 50);
        let _ = writeln!(out, "  changes ({}):", list.len());
        for c in &list {
            let _ = writeln!(out, "    {c}");
        }
        let _ = writeln!(
            out,
            "  gate: {}",
            match &verdict {
                Ok(v) if v.is_empty() => "open".to_string(),
                Ok(v) => format!("open, approved by {}", v.join(", ")),
                Err(e) => e.clone(),
            }
        );
        let _ = write!(out, "type `{to}` to promote, as {promoter}: ");
        let _ = out.flush();
        drop(out);
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != to {
            return Err(GateError(format!(
                "promotion not confirmed (typed `{}`, expected `{to}`): nothing was changed",
                answer.trim()
            ))
            .into());
        }
        // Typing the stage name is the promoter's approval; it goes on
        // record like any other.
        let unsigned = gate_cfg
            .as_ref()
            .is_some_and(|g| g.allowed_signers.is_some());
        if !unsigned {
            let expires = now
                + chrono::Duration::from_std(
                    gate_cfg
                        .as_ref()
                        .map(|g| g.approval_ttl)
                        .unwrap_or(std::time::Duration::from_secs(86400)),
                )
                .unwrap_or_default();
            let line = approval_line(
                &config,
                &cand,
                to,
                Verdict {
                    user: &promoter,
                    rejected: false,
                    expires,
                    now,
                    detail: Some("confirmed at the promote prompt".into()),
                },
            );
            record(&unreported(app), &config, Recipe::Deploy, to, |h| {
                let mut a = line.clone();
                a.entry.host = h.name.clone();
                a
            })
            .await?;
            decided.push(gate::to_decision(&line, None));
            verdict = gate::evaluate(to, gate_cfg.as_ref(), &cand, &decided, &promoter, now);
        }
    }

    let approvers = verdict.map_err(|why| GateError(format!("promote refused: {why}")))?;
    let promotion = Promotion {
        from_stage: from.clone(),
        from_release: cand.release.clone(),
        digest: cand.digest.clone(),
        approvers,
    };
    deploy::run_with(app, to, Some(&cand.commit), None, Some(&promotion)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_answers_parse_with_and_without_signers() {
        let a = "current:releases/20261124T190102Z\ncurrent_commit:abc\n--- signers\nalice ssh-ed25519 AAAA\n--- ledger\n{\"event\":\"approved\",\"release\":\"R\",\"commit\":\"c\",\"application\":\"a\",\"stage\":\"production\",\"host\":\"h\",\"user\":\"bob\",\"time\":\"t\",\"from_stage\":\"staging\",\"expires\":\"e\"}\n{\"event\":\"verified\",\"release\":\"R\",\"commit\":\"c\",\"application\":\"a\",\"stage\":\"production\",\"host\":\"h\",\"user\":\"bob\",\"time\":\"t\"}\n";
        let t = parse_target(a).unwrap();
        assert_eq!(t.current.as_deref(), Some("20261124T190102Z"));
        assert_eq!(t.current_commit.as_deref(), Some("abc"));
        assert_eq!(t.signers, Some(Ok("alice ssh-ed25519 AAAA\n".to_string())));
        assert_eq!(t.decisions.len(), 1);
        assert_eq!(t.decisions[0].entry.user, "bob");
        let b = "--- signers missing\n--- ledger\n";
        assert_eq!(
            parse_target(b).unwrap().signers,
            Some(Err("missing".into()))
        );
        assert_eq!(parse_target("--- ledger\n").unwrap().signers, None);
    }

    #[test]
    fn the_target_script_only_reads() {
        let s = target_script(
            &HostPaths::new("/srv/my app"),
            Some("/etc/shipit/allowed_signers"),
        );
        for w in [">", "rm ", "mkdir", "mv "] {
            assert!(!s.contains(w), "{w} in {s}");
        }
        assert!(s.contains("deploy_to='/srv/my app'\n"), "{s}");
        assert!(s.contains("signers='/etc/shipit/allowed_signers'\n"), "{s}");
    }
}
