//! The promotion protocol: production gets exactly the release that the
//! source stage verified, after the target stage's gate.
//!
//! 1. **candidate**: the release `current` and `verified` on every host of
//!    FROM ([`super::approve::find_candidate`]); hosts that disagree, or a
//!    release that failed there, refuse.
//! 2. **target**: each host of TO says where it stands, which decisions
//!    its ledger holds, and (when the gate names one) the allowed signers
//!    file; decisions are bound to the candidate and, with signers, count
//!    only when their signature verifies against that file, which must be
//!    the same on every host ([`decisions`]).
//! 3. **gate**: [`super::gate::evaluate`] over soak, approvals, allowed
//!    approvers, self-approval and expiry. On a terminal the release
//!    manager reviews ([`Review::lines`]) and types the stage's name, which
//!    is recorded as an approval ([`Review::confirm`]) before the gate is
//!    evaluated again.
//! 4. **deploy** of the candidate's commit (and archive digest) through
//!    [`super::deploy`], with a [`super::deploy::Promotion`] that writes
//!    the `promoted` record.

use std::process::Command as Process;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::approve::{approval_line, find_candidate, read_all, record, Verdict};
use super::deploy::Promotion;
use super::gate::{self, ApprovalLine, Candidate, Decision};
use super::session::Ctx;
use crate::config::{Config, Gate, Stage};
use crate::ledger::EventKind;
use crate::outcome::{GateError, UsageError};
use crate::plan::commands::HostPaths;
use crate::plan::planner::{self, Filters};
use crate::plan::Recipe;

/// What TO's hosts say: where they stand, the decisions recorded there,
/// and the allowed signers file when the gate names one.
pub struct TargetState {
    pub current: Option<String>,
    pub current_commit: Option<String>,
    pub decisions: Vec<ApprovalLine>,
    pub signers: Option<Result<String, String>>,
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

pub fn stage<'c>(config: &'c Config, name: &str) -> anyhow::Result<&'c Stage> {
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
pub fn from_stage(config: &Config, from: Option<&str>, to: &str) -> anyhow::Result<String> {
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

async fn read_targets(ctx: &Ctx, config: &Config, to: &str) -> anyhow::Result<Vec<TargetState>> {
    let t = stage(config, to)?;
    let signers = t.gate.as_ref().and_then(|g| g.allowed_signers.clone());
    let (_, hosts) = planner::select_hosts(config, to, &Filters::default())?;
    let outs = read_all(
        ctx,
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
pub fn decisions(
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

/// What the promoter reviews and the gate decides on.
pub struct Review {
    pub from: String,
    pub to: String,
    pub cand: Candidate,
    pub targets: Vec<TargetState>,
    gate: Option<Gate>,
    decided: Vec<Decision>,
    /// The gate's verdict: the approvers, or why it refuses.
    pub verdict: Result<Vec<String>, String>,
    pub promoter: String,
    now: DateTime<Utc>,
}

/// Reads the candidate on FROM and the state of TO, and evaluates TO's
/// gate. Changes nothing.
pub async fn review(
    ctx: &Ctx,
    config: &Config,
    from: &str,
    to: &str,
    promoter: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Review> {
    let cand = find_candidate(ctx, config, Recipe::Deploy, from, None).await?;
    let targets = read_targets(ctx, config, to).await?;
    let gate = stage(config, to)?.gate.clone();
    let decided = decisions(config, to, &cand, &targets).map_err(GateError)?;
    let verdict = gate::evaluate(to, gate.as_ref(), &cand, &decided, promoter, now);
    Ok(Review {
        from: from.to_string(),
        to: to.to_string(),
        cand,
        targets,
        gate,
        decided,
        verdict,
        promoter: promoter.to_string(),
        now,
    })
}

fn short(c: &str) -> &str {
    &c[..c.len().min(12)]
}

impl Review {
    /// Where TO stands now (its first host): release and commit.
    pub fn target_current(&self) -> (Option<&str>, Option<&str>) {
        let t = self.targets.first();
        (
            t.and_then(|t| t.current.as_deref()),
            t.and_then(|t| t.current_commit.as_deref()),
        )
    }

    /// What the release manager reads before typing the stage's name:
    /// the candidate (`subject`: its commit's subject), who deployed it and
    /// its smoke test, where TO is, the commits in between (`changes`),
    /// and the gate.
    pub fn lines(&self, subject: &str, changes: &[String]) -> Vec<String> {
        let (from, to, cand) = (&self.from, &self.to, &self.cand);
        let mut out = vec![
            format!("promote `{from}` -> `{to}`"),
            format!(
                "  candidate: release {} commit {} {subject}",
                cand.release,
                short(&cand.commit)
            ),
            format!(
                "  deployed to `{from}` by {} at {}; smoke test passed on every host (last at {})",
                cand.deployed_by,
                cand.deployed_at,
                cand.verified_at.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        ];
        if let Some(d) = &cand.digest {
            out.push(format!("  archive: {d}"));
        }
        out.push(format!(
            "  `{to}` is on: {}",
            match self.target_current() {
                (Some(c), Some(cc)) => format!("release {c} commit {}", short(cc)),
                _ => "nothing yet".into(),
            }
        ));
        out.push(format!("  changes ({}):", changes.len()));
        out.extend(changes.iter().map(|c| format!("    {c}")));
        out.push(format!(
            "  gate: {}",
            match &self.verdict {
                Ok(v) if v.is_empty() => "open".to_string(),
                Ok(v) => format!("open, approved by {}", v.join(", ")),
                Err(e) => e.clone(),
            }
        ));
        out
    }

    /// The question the release manager answers.
    pub fn question(&self) -> String {
        format!("type `{}` to promote, as {}: ", self.to, self.promoter)
    }

    /// The release manager typed `answer`: refused unless it is TO's name.
    /// Typing it is the promoter's approval and goes on record like any
    /// other (unsigned, so it does not count where signatures are
    /// required); the gate is then evaluated again.
    pub async fn confirm(
        &mut self,
        ctx: &Ctx,
        config: &Config,
        answer: &str,
    ) -> anyhow::Result<()> {
        let to = self.to.clone();
        if answer.trim() != to {
            return Err(GateError(format!(
                "promotion not confirmed (typed `{}`, expected `{to}`): nothing was changed",
                answer.trim()
            ))
            .into());
        }
        let signed_only = self
            .gate
            .as_ref()
            .is_some_and(|g| g.allowed_signers.is_some());
        if signed_only {
            return Ok(());
        }
        let ttl = self
            .gate
            .as_ref()
            .map(|g| g.approval_ttl)
            .unwrap_or(std::time::Duration::from_secs(86400));
        let expires = self.now + chrono::Duration::from_std(ttl).unwrap_or_default();
        let line = approval_line(
            config,
            &self.cand,
            &to,
            Verdict {
                user: &self.promoter,
                rejected: false,
                expires,
                now: self.now,
                detail: Some("confirmed at the promote prompt".into()),
            },
        );
        record(ctx, config, Recipe::Deploy, &to, |h| {
            let mut a = line.clone();
            a.entry.host = h.name.to_string();
            a
        })
        .await?;
        self.decided.push(gate::to_decision(&line, None));
        self.verdict = gate::evaluate(
            &to,
            self.gate.as_ref(),
            &self.cand,
            &self.decided,
            &self.promoter,
            self.now,
        );
        Ok(())
    }

    /// The deploy to run when the gate is open; exit 3 with why when not.
    pub fn promotion(self) -> Result<Promotion, GateError> {
        let approvers = self
            .verdict
            .map_err(|why| GateError(format!("promote refused: {why}")))?;
        Ok(Promotion {
            from_stage: self.from,
            from_release: self.cand.release.clone(),
            digest: self.cand.digest.clone(),
            approvers,
        })
    }
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
