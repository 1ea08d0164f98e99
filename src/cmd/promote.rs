//! `shipit promote [FROM] TO` and `shipit approve STAGE`: production gets
//! exactly the release verified on staging, after its gate.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Command as Process;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::deploy::{self, Promotion};
use super::on_hosts::{Connections, SCRIPT_TIMEOUT};
use super::App;
use crate::config::{Config, Host, Stage};
use crate::gate::{self, ApprovalLine, Candidate, Decision};
use crate::git;
use crate::ledger::{Entry, EventKind, LEDGER_PATH};
use crate::outcome::{GateError, Outcome, UsageError};
use crate::plan::commands::{self, HostPaths};
use crate::plan::inspect::{self, HostReleases};
use crate::plan::planner::{self, Filters};
use crate::shell::quote;

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
    let mut s = format!(
        "if [ -L {c} ]; then printf 'current:%s\\n' \"$(readlink {c})\"; fi\nif [ -f {r} ]; then printf 'current_commit:%s\\n' \"$(cat {r})\"; fi\n",
        c = quote(&p.at("current")),
        r = quote(&p.at("current/REVISION"))
    );
    if let Some(f) = signers {
        s.push_str(&format!(
            "if [ -f {f} ]; then echo '{SIGNERS_MARK}'; cat {f}; else echo '{SIGNERS_MARK} missing'; fi\n",
            f = quote(f)
        ));
    }
    s.push_str(&format!(
        "echo '{LEDGER_MARK}'\nif [ -f {l} ]; then cat {l}; fi\n",
        l = quote(&p.at(LEDGER_PATH))
    ));
    s
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

fn stage<'c>(config: &'c Config, name: &str) -> anyhow::Result<&'c Stage> {
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
fn from_stage(config: &Config, from: Option<&str>, to: &str) -> anyhow::Result<String> {
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

/// Runs one read script on every host of a stage; fails naming the hosts
/// that could not be read.
async fn read_hosts(
    app: &App,
    config: &Config,
    hosts: &[&Host],
    script: impl Fn(&Host, &HostPaths) -> String,
) -> anyhow::Result<Vec<String>> {
    let conns = Connections::open(hosts, &config.ssh).await?;
    let scripts: Vec<Option<String>> = hosts
        .iter()
        .map(|h| Some(script(h, &HostPaths::new(&h.deploy_to))))
        .collect();
    let runs = conns
        .run_each(&scripts, app.global.parallel, SCRIPT_TIMEOUT, None)
        .await
        .unwrap_or_default();
    conns.close().await;
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, r) in runs.into_iter().enumerate() {
        match r {
            Some(Ok(o)) if o.success() => out.push(o.stdout_str()),
            Some(Ok(o)) => bad.push(format!(
                "`{}`: {}",
                hosts[i].name,
                super::on_hosts::stderr_tail(&o)
            )),
            Some(Err(e)) => bad.push(format!("`{}`: {e}", hosts[i].name)),
            None => bad.push(format!("`{}`: not read", hosts[i].name)),
        }
    }
    if !bad.is_empty() {
        anyhow::bail!("cannot read every host: {}", bad.join("; "));
    }
    Ok(out)
}

/// The candidate on FROM: `current` and verified on every host, or the
/// given release.
async fn find_candidate(
    app: &App,
    config: &Config,
    from: &str,
    release: Option<&str>,
) -> anyhow::Result<Candidate> {
    let (_, hosts) = planner::select_hosts(config, from, &Filters::default())?;
    let outs = read_hosts(app, config, &hosts, |_, p| inspect::releases(p)).await?;
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
    gate::candidate(from, &pairs, release).map_err(|e| GateError(e).into())
}

async fn read_targets(app: &App, config: &Config, to: &str) -> anyhow::Result<Vec<TargetState>> {
    let t = stage(config, to)?;
    let signers = t.gate.as_ref().and_then(|g| g.allowed_signers.clone());
    let (_, hosts) = planner::select_hosts(config, to, &Filters::default())?;
    let outs = read_hosts(app, config, &hosts, |_, p| {
        target_script(p, signers.as_deref())
    })
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

/// Signs an approval's payload with `ssh-keygen -Y sign`.
fn sign(key: &Path, a: &ApprovalLine) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let pl = dir.path().join("approval");
    std::fs::write(&pl, gate::payload(a))?;
    let out = Process::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-f"])
        .arg(key)
        .args(["-n", gate::SIGNATURE_NAMESPACE])
        .arg(&pl)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run ssh-keygen (package openssh-client)")?;
    if !out.status.success() {
        return Err(UsageError(format!(
            "cannot sign with `{}`: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .into());
    }
    Ok(std::fs::read_to_string(dir.path().join("approval.sig"))?)
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

/// Appends `line`s (one per host of `to`) to TO's ledgers.
async fn record(
    app: &App,
    config: &Config,
    to: &str,
    make: impl Fn(&Host) -> ApprovalLine,
) -> anyhow::Result<()> {
    let (_, hosts) = planner::select_hosts(config, to, &Filters::default())?;
    read_hosts(app, config, &hosts, |host, p| {
        commands::ledger_append_raw(
            p,
            &serde_json::to_string(&make(host)).expect("ledger lines serialise"),
        )
    })
    .await
    .map(|_| ())
}

/// Who decided what, and until when.
struct Verdict<'a> {
    user: &'a str,
    rejected: bool,
    expires: DateTime<Utc>,
    now: DateTime<Utc>,
    detail: Option<String>,
}

/// The ledger line of a decision on `cand` for `to` (its host is filled
/// in per host when it is written).
fn approval_line(config: &Config, cand: &Candidate, to: &str, v: Verdict<'_>) -> ApprovalLine {
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

/// Options of `shipit approve`.
pub struct ApproveArgs<'a> {
    pub stage: &'a str,
    pub release: Option<&'a str>,
    pub as_user: Option<&'a str>,
    pub reject: bool,
    pub expires: Option<std::time::Duration>,
    pub sign_key: Option<&'a Path>,
    pub message: Option<&'a str>,
}

pub async fn approve(app: &App, args: ApproveArgs<'_>) -> anyhow::Result<Outcome> {
    let config = app.load_config()?;
    let to = args.stage;
    let from = from_stage(&config, None, to)?;
    let gate_cfg = stage(&config, to)?.gate.clone();
    if gate_cfg
        .as_ref()
        .is_some_and(|g| g.allowed_signers.is_some())
        && args.sign_key.is_none()
    {
        return Err(UsageError(format!(
            "`{to}` accepts only signed approvals: pass --sign-key with your ssh key (its public key must be in the stage's allowed signers)"
        ))
        .into());
    }
    let user = args
        .as_user
        .map(str::to_string)
        .unwrap_or_else(|| app.user());
    let cand = find_candidate(app, &config, &from, args.release).await?;
    let now = Utc::now();
    let ttl = args
        .expires
        .or(gate_cfg.as_ref().map(|g| g.approval_ttl))
        .unwrap_or(std::time::Duration::from_secs(24 * 3600));
    let expires = now + chrono::Duration::from_std(ttl).unwrap_or_default();
    let template = approval_line(
        &config,
        &cand,
        to,
        Verdict {
            user: &user,
            rejected: args.reject,
            expires,
            now,
            detail: args.message.map(str::to_string),
        },
    );
    let signature = match args.sign_key {
        Some(k) => Some(sign(k, &template)?),
        None => None,
    };
    record(app, &config, to, |h| {
        let mut a = template.clone();
        a.entry.host = h.name.clone();
        a.signature = signature.clone();
        a
    })
    .await?;
    println!(
        "{} release {} (commit {}) of `{from}` for `{to}` as {user}{}, valid until {}",
        if args.reject { "rejected" } else { "approved" },
        cand.release,
        short(&cand.commit),
        if signature.is_some() { ", signed" } else { "" },
        expires.format("%Y-%m-%dT%H:%M:%SZ")
    );
    Ok(Outcome::Success)
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
    let cand = find_candidate(app, &config, &from, None).await?;
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
            record(app, &config, to, |h| {
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
        assert!(s.contains("'/srv/my app/.shipit/ledger.jsonl'"));
    }
}
