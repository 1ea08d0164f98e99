//! The promotion protocol: production gets exactly the release that the
//! source stage verified, after the target stage's gate.
//!
//! 1. **source**: FROM is TO's `promote_from` ([`from_stage`]); another
//!    stage is refused.
//! 2. **trust root**: a read of its own on every host of TO
//!    ([`super::trust_root`]): the allowed signers file and the pinned
//!    gates, root-owned, not writable by the deploy user, the same on every
//!    host. The effective gate is the stricter of deploy.yml's and the
//!    pinned ones. Nothing a release or a ledger holds is read there.
//! 3. **candidate**: the release `current` and `verified` on every host of
//!    FROM, its REVISION the verified commit
//!    ([`super::approve::find_candidate`]).
//! 4. **promoter**: with allowed signers, the promoter signs what is
//!    promoted ([`gate::promoted_payload`]) and is who the allowed signers
//!    say that key is; else the name given (`--as`, `SHIPIT_USER`).
//! 5. **decisions**: each host of TO's ledger; bound to the application,
//!    both stages, the release, commit and digest; approvals on every host,
//!    rejections on any; with signers, only lines whose signature verifies
//!    ([`decisions`]).
//! 6. **gate**: [`gate::evaluate`] over rejections, soak, approvals,
//!    allowed approvers, self-approval and expiry; every rule is reported
//!    ([`Review::verdict`]). On a terminal the release manager reviews
//!    ([`Review::lines`]) and types the stage's name (recorded as an
//!    approval when approvals are not signed, [`Review::confirm`]); the
//!    whole review is then done again.
//! 7. **deploy** of the candidate's commit (and archive digest) through
//!    [`super::deploy`], with a [`super::deploy::Promotion`] that writes
//!    the `promoted` record (signed by the promoter when signers are
//!    configured).

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::approve::{approval_line, find_candidate, read_all, record, Verdict};
use super::deploy::Promotion;
use super::gate::{
    self, ApprovalLine, Binding, Candidate, Decision, GateVerdict, PromotedClaim,
    PromoterSignature, Rule,
};
use super::session::Ctx;
use super::trust_root::{self, Trust};
use crate::config::{Config, Gate, Stage};
use crate::ledger::EventKind;
use crate::outcome::{GateError, UsageError};
use crate::plan::commands::HostPaths;
use crate::plan::planner::{self, Filters};
use crate::plan::Recipe;

/// What TO's hosts say: where they stand and the decisions recorded there.
pub struct TargetState {
    pub current: Option<String>,
    pub current_commit: Option<String>,
    pub decisions: Vec<ApprovalLine>,
}

const LEDGER_MARK: &str = "--- ledger";

/// Reads a target host: `current`, its commit, the ledger. Changes nothing.
fn target_script(p: &HostPaths) -> String {
    crate::plan::inspect::promote_target(p, LEDGER_MARK)
}

fn parse_target(stdout: &str) -> Option<TargetState> {
    let (head, ledger) = if let Some(l) = stdout.strip_prefix(&format!("{LEDGER_MARK}\n")) {
        ("", l)
    } else {
        stdout.split_once(&format!("\n{LEDGER_MARK}\n"))?
    };
    let mut st = TargetState {
        current: None,
        current_commit: None,
        decisions: Vec::new(),
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

/// FROM for a promotion into `to`: TO's `promote_from`. A FROM given that
/// is not it is refused (exit 3): the gate is only for that path. A stage
/// without `promote_from` takes the FROM given.
pub fn from_stage(config: &Config, from: Option<&str>, to: &str) -> anyhow::Result<String> {
    let t = stage(config, to)?;
    let from = match (from, &t.promote_from) {
        (Some(f), Some(p)) if f != p => {
            return Err(GateError(format!(
                "`{to}` is promoted from `{p}` only (its `promote_from`), not from `{f}`: run `shipit promote {to}`"
            ))
            .into())
        }
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
    let (_, hosts) = planner::select_hosts(config, to, &Filters::default())?;
    let outs = read_all(
        ctx,
        config,
        Recipe::Deploy,
        "read_target",
        &hosts,
        |_, p| target_script(p),
    )
    .await?;
    outs.iter()
        .enumerate()
        .map(|(i, o)| {
            parse_target(o).with_context(|| format!("unreadable answer from `{}`", hosts[i].name))
        })
        .collect()
}

/// Reads and decides the trust root of `to`'s gate on every host of `to`
/// (a read of its own). `Err(Ok(why))` is a refusal; `Err(Err(e))` a host
/// that could not be read.
pub async fn read_trust(
    ctx: &Ctx,
    config: &Config,
    recipe: Recipe,
    to: &str,
) -> Result<Trust, Result<String, anyhow::Error>> {
    let yml = stage(config, to).map_err(Err)?.gate.as_ref();
    let files = trust_root::files(&config.application, to, yml);
    let (_, hosts) =
        planner::select_hosts(config, to, &Filters::default()).map_err(|e| Err(e.into()))?;
    let outs = read_all(ctx, config, recipe, "trust_root", &hosts, |_, _| {
        crate::plan::inspect::trust_root(&files)
    })
    .await
    .map_err(Err)?;
    let mut read = Vec::new();
    for (i, o) in outs.iter().enumerate() {
        let t = trust_root::parse(o, files.len()).ok_or_else(|| {
            Err(anyhow::anyhow!(
                "unreadable trust root answer from `{}`",
                hosts[i].name
            ))
        })?;
        read.push((hosts[i].name.as_str(), t));
    }
    trust_root::resolve(&config.application, to, yml, &read).map_err(Ok)
}

/// Writes `signers`, `sig` and `payload` into a fresh directory for
/// `ssh-keygen -Y`.
fn signature_files(
    signers: &str,
    sig: &str,
    payload: &str,
) -> Option<(tempfile::TempDir, PathBuf, PathBuf, PathBuf)> {
    let dir = tempfile::tempdir().ok()?;
    let (sf, sg, pl) = (
        dir.path().join("allowed_signers"),
        dir.path().join("sig"),
        dir.path().join("payload"),
    );
    std::fs::write(&sf, signers).ok()?;
    std::fs::write(&sg, sig).ok()?;
    std::fs::write(&pl, payload).ok()?;
    Some((dir, sf, sg, pl))
}

/// `ssh-keygen -Y verify`: `sig` over `payload` in `namespace` is by a key
/// `signers` lists for `principal`.
fn verify(signers: &str, principal: &str, namespace: &str, sig: &str, payload: &str) -> bool {
    let Some((_dir, sf, sg, pl)) = signature_files(signers, sig, payload) else {
        return false;
    };
    let Ok(input) = std::fs::File::open(&pl) else {
        return false;
    };
    Process::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(&sf)
        .args(["-I", principal, "-n", namespace, "-s"])
        .arg(&sg)
        .stdin(input)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Checks a decision's signature against `signers`: by the line's user,
/// over every field of the line, in its record type's namespace.
fn verify_signature(signers: &str, a: &ApprovalLine) -> bool {
    let Some(sig) = &a.signature else {
        return false;
    };
    verify(
        signers,
        &a.entry.user,
        gate::namespace(a.entry.event),
        sig,
        &gate::payload(a),
    )
}

/// The principals `signers` lists for the key that made `sig` whose
/// signature over `payload` verifies (`ssh-keygen -Y find-principals`,
/// then `-Y verify` for each).
fn principals(signers: &str, sig: &str, payload: &str, namespace: &str) -> Vec<String> {
    let Some((_dir, sf, sg, _)) = signature_files(signers, sig, payload) else {
        return Vec::new();
    };
    let out = Process::new("ssh-keygen")
        .args(["-Y", "find-principals", "-f"])
        .arg(&sf)
        .arg("-s")
        .arg(&sg)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = out else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|p| !p.is_empty() && verify(signers, p, namespace, sig, payload))
        .collect()
}

/// The gate's view of the decisions recorded on TO for `cand`; with
/// `signers`, each says whether its signature verifies.
pub fn decisions(
    config: &Config,
    to: &str,
    cand: &Candidate,
    targets: &[TargetState],
    signers: Option<&str>,
) -> Vec<Decision> {
    let per_host: Vec<Vec<ApprovalLine>> = targets.iter().map(|t| t.decisions.clone()).collect();
    let b = Binding {
        application: &config.application,
        to,
        cand,
    };
    gate::decisions_for(&b, &per_host)
        .iter()
        .map(|a| gate::to_decision(a, signers.map(|s| verify_signature(s, a))))
        .collect()
}

/// Who asks for the promotion: the name given (`--as`, `SHIPIT_USER`) and
/// the key they sign with, if any.
#[derive(Debug, Clone)]
pub struct Who {
    pub name: String,
    pub sign_key: Option<PathBuf>,
}

/// A gate refusal with the rules weighed up to it: the `gate` event
/// reports them.
#[derive(Debug, thiserror::Error)]
#[error("{why}")]
pub struct Refused {
    pub from: String,
    pub to: String,
    pub cand: Option<Candidate>,
    pub rules: Vec<Rule>,
    pub why: String,
}

fn refused(
    from: &str,
    to: &str,
    cand: Option<&Candidate>,
    mut rules: Vec<Rule>,
    rule: &'static str,
    why: String,
) -> anyhow::Error {
    rules.push(Rule::fail(rule, why.clone()));
    Refused {
        from: from.to_string(),
        to: to.to_string(),
        cand: cand.cloned(),
        rules,
        why,
    }
    .into()
}

/// The promoter's identity to the gate: with `signers`, the principals of
/// their key, proven by signing `claim`; else their name.
fn promoter(
    who: &Who,
    signers: Option<&str>,
    claim: &PromotedClaim,
    to: &str,
) -> Result<(Vec<String>, Option<PromoterSignature>), String> {
    let Some(signers) = signers else {
        return Ok((vec![who.name.clone()], None));
    };
    let Some(key) = &who.sign_key else {
        return Err(format!(
            "`{to}` takes only promotions signed by an allowed signer: pass --sign-key with your ssh key"
        ));
    };
    let payload = gate::promoted_payload(claim);
    let ns = gate::namespace(EventKind::Promoted);
    let sig = sign_text(key, &payload, ns).map_err(|e| format!("{e:#}"))?;
    let ids = principals(signers, &sig, &payload, ns);
    if ids.is_empty() {
        return Err(format!(
            "the promoter's key `{}` is not in the allowed signers of `{to}`: promote with a key listed there",
            key.display()
        ));
    }
    Ok((
        ids.clone(),
        Some(PromoterSignature {
            signed_by: ids.join(","),
            time: claim.time.clone(),
            signature: sig,
        }),
    ))
}

/// Signs `text` with `key` in `namespace` (`ssh-keygen -Y sign`).
pub fn sign_text(key: &Path, text: &str, namespace: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let pl = dir.path().join("payload");
    std::fs::write(&pl, text)?;
    let out = Process::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-f"])
        .arg(key)
        .args(["-n", namespace])
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
    Ok(std::fs::read_to_string(dir.path().join("payload.sig"))?)
}

/// What the promoter reviews and the gate decides on.
pub struct Review {
    pub from: String,
    pub to: String,
    pub cand: Candidate,
    pub targets: Vec<TargetState>,
    /// The effective gate (deploy.yml's, made stricter by pinned gates).
    gate: Option<Gate>,
    /// The gate's verdict: every rule, and the approvers that count.
    pub verdict: GateVerdict,
    pub who: Who,
    /// Who the promoter is to the gate (see [`gate::evaluate`]).
    pub promoter_ids: Vec<String>,
    signature: Option<PromoterSignature>,
    now: DateTime<Utc>,
}

/// Reads the trust root and the state of TO and the candidate on FROM, and
/// evaluates TO's gate. Changes nothing. A refusal before the gate could
/// weigh decisions is a [`Refused`].
pub async fn review(
    ctx: &Ctx,
    config: &Config,
    from: &str,
    to: &str,
    who: &Who,
    now: DateTime<Utc>,
) -> anyhow::Result<Review> {
    let mut rules = vec![Rule::pass(
        "source",
        match &stage(config, to)?.promote_from {
            Some(_) => format!("`{from}` is `{to}`'s promote_from"),
            None => format!("`{to}` has no promote_from; promoting from `{from}` as asked"),
        },
    )];
    let trust = match read_trust(ctx, config, Recipe::Deploy, to).await {
        Ok(t) => t,
        Err(Ok(why)) => return Err(refused(from, to, None, rules, "trust_root", why)),
        Err(Err(e)) => return Err(e),
    };
    rules.push(Rule::pass("trust_root", trust.describe()));
    let cand = match find_candidate(ctx, config, Recipe::Deploy, from, now).await {
        Ok(c) => c,
        Err(e) => match e.downcast::<GateError>() {
            Ok(GateError(why)) => return Err(refused(from, to, None, rules, "candidate", why)),
            Err(e) => return Err(e),
        },
    };
    rules.push(Rule::pass(
        "candidate",
        format!(
            "release {} (commit {}) is current and verified on every host of `{from}`, its REVISION the verified commit",
            cand.release,
            short(&cand.commit)
        ),
    ));
    let claim = PromotedClaim {
        application: config.application.clone(),
        stage: to.to_string(),
        from_stage: from.to_string(),
        from_release: cand.release.clone(),
        commit: cand.commit.clone(),
        digest: cand.digest.clone(),
        time: now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    let (promoter_ids, signature) = match promoter(who, trust.signers.as_deref(), &claim, to) {
        Ok(x) => x,
        Err(why) => return Err(refused(from, to, Some(&cand), rules, "promoter", why)),
    };
    rules.push(Rule::pass(
        "promoter",
        if signature.is_some() {
            format!("signed by {}", promoter_ids.join(", "))
        } else {
            format!("{} (by name: approvals are not signed)", who.name)
        },
    ));
    let targets = read_targets(ctx, config, to).await?;
    let decided = decisions(config, to, &cand, &targets, trust.signers.as_deref());
    let mut verdict = gate::evaluate(to, trust.gate.as_ref(), &cand, &decided, &promoter_ids, now);
    rules.append(&mut verdict.rules);
    verdict.rules = rules;
    Ok(Review {
        from: from.to_string(),
        to: to.to_string(),
        cand,
        targets,
        gate: trust.gate,
        verdict,
        who: who.clone(),
        promoter_ids,
        signature,
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

    /// The promoter as shown: their signing identity, else their name.
    pub fn promoter(&self) -> String {
        self.promoter_ids.join(", ")
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
            match self.verdict.result() {
                Ok(v) if v.is_empty() => "open".to_string(),
                Ok(v) => format!("open, approved by {}", v.join(", ")),
                Err(e) => e,
            }
        ));
        out.extend(self.verdict.rules.iter().map(|r| {
            format!(
                "    {} {}: {}",
                if r.passed { "ok  " } else { "FAIL" },
                r.rule,
                r.detail
            )
        }));
        out
    }

    /// The question the release manager answers.
    pub fn question(&self) -> String {
        format!("type `{}` to promote, as {}: ", self.to, self.promoter())
    }

    /// The release manager typed `answer`: refused unless it is TO's name.
    /// Typing it is the promoter's approval and goes on record like any
    /// other when approvals are not signed (where they are, only signed
    /// approvals count and nothing is recorded). The caller then reviews
    /// again: the gate is evaluated on what the hosts say after the prompt.
    pub async fn confirm(&self, ctx: &Ctx, config: &Config, answer: &str) -> anyhow::Result<()> {
        let to = self.to.clone();
        if answer.trim() != to {
            return Err(GateError(format!(
                "promotion not confirmed (typed `{}`, expected `{to}`): nothing was changed",
                answer.trim()
            ))
            .into());
        }
        if self.signature.is_some() {
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
                user: &self.who.name,
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
        .await
    }

    /// The deploy to run when the gate is open; exit 3 with why when not.
    pub fn promotion(self) -> Result<Promotion, GateError> {
        let approvers = self
            .verdict
            .result()
            .map_err(|why| GateError(format!("promote refused: {why}")))?;
        Ok(Promotion {
            from_stage: self.from,
            from_release: self.cand.release.clone(),
            digest: self.cand.digest.clone(),
            approvers,
            signature: self.signature,
            recheck: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_answers_parse_and_carry_no_trust_root() {
        let a = "current:releases/20261124T190102Z\ncurrent_commit:abc\n--- ledger\n{\"event\":\"approved\",\"release\":\"R\",\"commit\":\"c\",\"application\":\"a\",\"stage\":\"production\",\"host\":\"h\",\"user\":\"bob\",\"time\":\"t\",\"from_stage\":\"staging\",\"expires\":\"e\"}\n{\"event\":\"verified\",\"release\":\"R\",\"commit\":\"c\",\"application\":\"a\",\"stage\":\"production\",\"host\":\"h\",\"user\":\"bob\",\"time\":\"t\"}\n";
        let t = parse_target(a).unwrap();
        assert_eq!(t.current.as_deref(), Some("20261124T190102Z"));
        assert_eq!(t.current_commit.as_deref(), Some("abc"));
        assert_eq!(t.decisions.len(), 1);
        assert_eq!(t.decisions[0].entry.user, "bob");
        assert!(parse_target("--- ledger\n").unwrap().decisions.is_empty());
        assert!(parse_target("current:x\n").is_none());
    }

    #[test]
    fn the_target_script_only_reads_and_never_the_trust_root() {
        let s = target_script(&HostPaths::new("/srv/my app"));
        for w in [">", "rm ", "mkdir", "mv ", "signers"] {
            assert!(!s.contains(w), "{w} in {s}");
        }
        assert!(s.contains("deploy_to='/srv/my app'\n"), "{s}");
        let t = crate::plan::inspect::trust_root(&["/etc/shipit/allowed_signers".into()]);
        for w in [">", "rm ", "mkdir", "mv ", "ledger", "REVISION"] {
            assert!(!t.contains(w), "{w} in {t}");
        }
        assert!(t.contains("set -- '/etc/shipit/allowed_signers'\n"), "{t}");
    }

    #[test]
    fn the_trust_root_script_frames_content_in_hex() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("allowed_signers");
        std::fs::write(&f, "f2:missing\nend\n").unwrap();
        let files = vec![
            f.to_string_lossy().into_owned(),
            dir.path().join("none").to_string_lossy().into_owned(),
        ];
        let out = Process::new("sh")
            .arg("-c")
            .arg(crate::plan::inspect::trust_root(&files))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let t = trust_root::parse(&String::from_utf8_lossy(&out.stdout), 2).unwrap();
        match &t.files[0] {
            trust_root::FileRead::File(m) => assert_eq!(m.content, b"f2:missing\nend\n"),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.files[1], trust_root::FileRead::Missing);
    }
}
