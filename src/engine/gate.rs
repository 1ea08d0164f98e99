//! Promotion: which release a stage may be promoted from, and whether the
//! target's gate lets it through. Pure: hosts' state, the clock and the
//! signature checks are passed in.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Gate;
use crate::ledger::{Entry, EventKind};
use crate::plan::inspect::{release_status, HostReleases};

/// The release that would be promoted: `current` and `verified` on every
/// host of the stage it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub from_stage: String,
    pub release: String,
    pub commit: String,
    /// Strategy copy: the archive digest every host of FROM got.
    pub digest: Option<String>,
    /// When the last host of FROM verified it (soak counts from here).
    pub verified_at: DateTime<Utc>,
    /// Who deployed it to FROM, and when (from the `published` entry).
    pub deployed_by: String,
    pub deployed_at: String,
}

/// An `approved` or `rejected` ledger line: the common fields plus what
/// binds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalLine {
    #[serde(flatten)]
    pub entry: Entry,
    pub from_stage: String,
    /// RFC 3339 UTC; after it the approval no longer counts.
    pub expires: String,
    /// `ssh-keygen -Y sign` output over [`payload`], when signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A `promoted` ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedLine {
    #[serde(flatten)]
    pub entry: Entry,
    pub from_stage: String,
    pub from_release: String,
    pub approvers: Vec<String>,
}

/// The namespace approvals are signed in (`ssh-keygen -Y sign -n`).
pub const SIGNATURE_NAMESPACE: &str = "shipit-approval";

/// The exact text an approval's signature covers.
pub fn payload(a: &ApprovalLine) -> String {
    format!(
        "shipit approval v1\nstage: {}\nfrom: {}\nrelease: {}\ncommit: {}\ndigest: {}\napprover: {}\ndecision: {}\nexpires: {}\n",
        a.entry.stage,
        a.from_stage,
        a.entry.release,
        a.entry.commit,
        a.entry.digest.as_deref().unwrap_or("-"),
        a.entry.user,
        if a.entry.event == EventKind::Rejected {
            "rejected"
        } else {
            "approved"
        },
        a.expires
    )
}

fn names(hosts: &[&str]) -> String {
    hosts.join(", ")
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Picks the candidate from FROM's hosts. `release` asks for a given
/// release instead of `current` (it must still be verified everywhere).
/// The error is a refusal sentence.
pub fn candidate(
    from_stage: &str,
    hosts: &[(&str, &HostReleases)],
    release: Option<&str>,
) -> Result<Candidate, String> {
    let mut by_current: Vec<(Option<&str>, Vec<&str>)> = Vec::new();
    for (name, h) in hosts {
        let c = h.current.as_deref();
        match by_current.iter_mut().find(|(x, _)| *x == c) {
            Some((_, v)) => v.push(name),
            None => by_current.push((c, vec![name])),
        }
    }
    let id = match release {
        Some(r) => r.to_string(),
        None => {
            if by_current.len() > 1 {
                let parts: Vec<String> = by_current
                    .iter()
                    .map(|(c, hs)| format!("{} on {}", c.unwrap_or("nothing"), names(hs)))
                    .collect();
                return Err(format!(
                    "`{from_stage}` hosts disagree about their current release ({}): deploy or roll back `{from_stage}` so every host runs the same release",
                    parts.join(" but ")
                ));
            }
            match by_current.first().and_then(|(c, _)| *c) {
                Some(c) => c.to_string(),
                None => {
                    return Err(format!(
                        "`{from_stage}` has no current release to promote: deploy it first"
                    ))
                }
            }
        }
    };
    let mut commit: Option<String> = None;
    let mut digest: Option<Option<String>> = None;
    let mut verified_at: Option<DateTime<Utc>> = None;
    let mut deployed = (String::new(), String::new());
    let mut not_verified: Vec<(String, String)> = Vec::new();
    for (name, h) in hosts {
        let entries = &h.ledger.entries;
        match release_status(entries, &id) {
            Some(e) if e.event == EventKind::Verified => {
                let t = parse_time(&e.time).unwrap_or(DateTime::<Utc>::MIN_UTC);
                verified_at = Some(verified_at.map_or(t, |v| v.max(t)));
                match &commit {
                    Some(c) if *c != e.commit => {
                        return Err(format!(
                            "release {id} has different commits on `{from_stage}` hosts ({c} and {} on {name}): refusing to guess",
                            e.commit
                        ))
                    }
                    _ => commit = Some(e.commit.clone()),
                }
                let d = entries
                    .iter()
                    .rev()
                    .find(|x| x.release == id && x.digest.is_some())
                    .and_then(|x| x.digest.clone());
                match &digest {
                    Some(prev) if *prev != d => {
                        return Err(format!(
                            "release {id} has different archive digests on `{from_stage}` hosts: refusing to promote it"
                        ))
                    }
                    _ => digest = Some(d),
                }
                if deployed.0.is_empty() {
                    if let Some(p) = entries
                        .iter()
                        .rev()
                        .find(|x| x.release == id && x.event == EventKind::Published)
                    {
                        deployed = (p.user.clone(), p.time.clone());
                    }
                }
            }
            Some(e) => {
                let why = match e.event {
                    EventKind::Failed => "its deploy or smoke test failed".to_string(),
                    EventKind::RolledBack => "it was rolled back".to_string(),
                    other => format!(
                        "its smoke test has not passed (last event: {})",
                        crate::plan::inspect::event_name(other)
                    ),
                };
                not_verified.push((name.to_string(), why));
            }
            None => not_verified.push((name.to_string(), "it is not there".to_string())),
        }
    }
    if !not_verified.is_empty() {
        let parts: Vec<String> = not_verified
            .iter()
            .map(|(h, why)| format!("on {h} {why}"))
            .collect();
        return Err(format!(
            "release {id} is not verified on `{from_stage}`: {}; only a release whose smoke test passed on every host can be promoted",
            parts.join("; ")
        ));
    }
    Ok(Candidate {
        from_stage: from_stage.to_string(),
        release: id,
        commit: commit.unwrap_or_default(),
        digest: digest.flatten(),
        verified_at: verified_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
        deployed_by: deployed.0,
        deployed_at: deployed.1,
    })
}

/// An approval or rejection as the gate weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub user: String,
    pub approved: bool,
    pub time: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    /// `None` when the stage does not ask for signatures; else whether the
    /// signature verified against the allowed signers.
    pub signature_ok: Option<bool>,
}

/// The decisions that concern `cand` for stage `to`: bound to its commit
/// and digest, read from lines found on every host of `to` (a line on only
/// some hosts does not count: approvals are written to all of them).
pub fn decisions_for(
    cand: &Candidate,
    to: &str,
    per_host: &[Vec<ApprovalLine>],
) -> Vec<ApprovalLine> {
    let Some(first) = per_host.first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter(|a| {
            a.entry.stage == to
                && a.entry.commit == cand.commit
                && a.entry.digest == cand.digest
                && matches!(a.entry.event, EventKind::Approved | EventKind::Rejected)
        })
        .filter(|a| {
            per_host[1..].iter().all(|other| {
                other.iter().any(|b| {
                    b.entry.event == a.entry.event
                        && b.entry.user == a.entry.user
                        && b.entry.commit == a.entry.commit
                        && b.expires == a.expires
                        && b.signature == a.signature
                })
            })
        })
        .cloned()
        .collect()
}

pub fn to_decision(a: &ApprovalLine, signature_ok: Option<bool>) -> Decision {
    Decision {
        user: a.entry.user.clone(),
        approved: a.entry.event == EventKind::Approved,
        time: parse_time(&a.entry.time).unwrap_or(DateTime::<Utc>::MIN_UTC),
        expires: parse_time(&a.expires).unwrap_or(DateTime::<Utc>::MIN_UTC),
        signature_ok,
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// What the gate says. `Ok` carries the approvers that count. Logged
/// (`SHIPIT_LOG=debug`) with what it weighed.
pub fn evaluate(
    to: &str,
    gate: Option<&Gate>,
    cand: &Candidate,
    decisions: &[Decision],
    promoter: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, String> {
    for d in decisions {
        tracing::debug!(
            stage = to,
            user = %d.user,
            approved = d.approved,
            time = %d.time,
            expires = %d.expires,
            signature_ok = ?d.signature_ok,
            "gate: a recorded decision"
        );
    }
    let verdict = weigh(to, gate, cand, decisions, promoter, now);
    match &verdict {
        Ok(approvers) => tracing::debug!(
            stage = to,
            release = %cand.release,
            commit = %cand.commit,
            promoter,
            ?approvers,
            "gate passes"
        ),
        Err(why) => tracing::debug!(
            stage = to,
            release = %cand.release,
            commit = %cand.commit,
            promoter,
            "gate refuses: {why}"
        ),
    }
    verdict
}

fn weigh(
    to: &str,
    gate: Option<&Gate>,
    cand: &Candidate,
    decisions: &[Decision],
    promoter: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, String> {
    let Some(gate) = gate else {
        return Ok(Vec::new());
    };
    let allowed = |u: &str| gate.approvers.is_empty() || gate.approvers.iter().any(|a| a == u);
    // Each person's latest word counts.
    let mut latest: Vec<&Decision> = Vec::new();
    for d in decisions {
        match latest.iter_mut().find(|x| x.user == d.user) {
            Some(x) if x.time <= d.time => *x = d,
            Some(_) => {}
            None => latest.push(d),
        }
    }
    let sig_ok = |d: &Decision| d.signature_ok != Some(false);
    if let Some(r) = latest
        .iter()
        .find(|d| !d.approved && d.expires > now && allowed(&d.user) && sig_ok(d))
    {
        return Err(format!(
            "release {} (commit {}) was rejected for `{to}` by {} at {}: it cannot be promoted until {} approves it",
            cand.release,
            short(&cand.commit),
            r.user,
            r.time.format("%Y-%m-%dT%H:%M:%SZ"),
            r.user
        ));
    }
    let soak = gate.soak;
    let ready_at = cand.verified_at + chrono::Duration::from_std(soak).unwrap_or_default();
    if now < ready_at {
        let left = (ready_at - now).to_std().unwrap_or_default();
        return Err(format!(
            "release {} was verified on `{}` at {}, and `{to}` needs a soak of {}: it can be promoted after {} (in {})",
            cand.release,
            cand.from_stage,
            cand.verified_at.format("%Y-%m-%dT%H:%M:%SZ"),
            human(soak),
            ready_at.format("%Y-%m-%dT%H:%M:%SZ"),
            human(left)
        ));
    }
    let need = gate.approvals as usize;
    if need == 0 {
        return Ok(Vec::new());
    }
    let mut unsigned = Vec::new();
    let mut not_allowed = Vec::new();
    let mut expired = Vec::new();
    let mut valid: Vec<String> = Vec::new();
    for d in latest.iter().filter(|d| d.approved) {
        if !sig_ok(d) {
            unsigned.push(d.user.clone());
        } else if !allowed(&d.user) {
            not_allowed.push(d.user.clone());
        } else if d.expires <= now {
            expired.push(d.user.clone());
        } else {
            valid.push(d.user.clone());
        }
    }
    let others: Vec<&String> = valid.iter().filter(|u| *u != promoter).collect();
    let who = if gate.approvers.is_empty() {
        "anyone".to_string()
    } else {
        gate.approvers.join(" or ")
    };
    let mut notes = Vec::new();
    if !unsigned.is_empty() {
        notes.push(format!(
            "the approval by {} is not signed by a key in the allowed signers",
            unsigned.join(", ")
        ));
    }
    if !not_allowed.is_empty() {
        notes.push(format!(
            "{} may not approve `{to}` (approvers: {})",
            not_allowed.join(", "),
            gate.approvers.join(", ")
        ));
    }
    if !expired.is_empty() {
        notes.push(format!(
            "the approval by {} has expired",
            expired.join(", ")
        ));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    if valid.len() < need {
        return Err(format!(
            "release {} (commit {}) has {} of the {need} approval{} `{to}` needs{notes}: run `shipit approve {to}` as {who}",
            cand.release,
            short(&cand.commit),
            valid.len(),
            if need == 1 { "" } else { "s" },
        ));
    }
    if !gate.self_approval && others.is_empty() {
        return Err(format!(
            "the only approval of release {} is by {promoter}, who is promoting it, and `{to}` has `self_approval: false`: it needs an approval by someone else ({who})",
            cand.release
        ));
    }
    Ok(valid)
}

fn short(c: &str) -> &str {
    &c[..c.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger;
    use chrono::TimeZone;

    fn entry(event: EventKind, release: &str, commit: &str, time: &str) -> Entry {
        Entry {
            event,
            release: release.into(),
            commit: commit.into(),
            digest: None,
            application: "shop".into(),
            stage: "staging".into(),
            host: "h".into(),
            user: "dev".into(),
            build_url: None,
            detail: None,
            time: time.into(),
        }
    }

    fn host(current: Option<&str>, events: &[(EventKind, &str, &str)]) -> HostReleases {
        HostReleases {
            deploy_to_exists: true,
            releases: Vec::new(),
            current: current.map(str::to_string),
            ledger: ledger::Parsed {
                entries: events
                    .iter()
                    .map(|(e, r, t)| entry(*e, r, "c1", t))
                    .collect(),
                bad_lines: Vec::new(),
            },
        }
    }

    const R: &str = "20261124T190102Z";

    fn verified_host(t: &str) -> HostReleases {
        host(
            Some(R),
            &[
                (EventKind::Staged, R, t),
                (EventKind::Published, R, t),
                (EventKind::Verified, R, t),
            ],
        )
    }

    #[test]
    fn the_candidate_is_current_and_verified_everywhere() {
        let a = verified_host("2026-11-24T19:01:05Z");
        let b = verified_host("2026-11-24T19:01:09Z");
        let c = candidate("staging", &[("s1", &a), ("s2", &b)], None).unwrap();
        assert_eq!(c.release, R);
        assert_eq!(c.commit, "c1");
        assert_eq!(
            c.verified_at,
            Utc.with_ymd_and_hms(2026, 11, 24, 19, 1, 9).unwrap()
        );
        assert_eq!(c.deployed_by, "dev");
    }

    #[test]
    fn refusals_name_hosts_and_reasons() {
        let good = verified_host("2026-11-24T19:01:05Z");
        let other = host(Some("20261124T180000Z"), &[]);
        let failed = host(
            Some(R),
            &[(EventKind::Published, R, "t"), (EventKind::Failed, R, "t")],
        );
        let none = host(None, &[]);
        let cases: Vec<(Vec<(&str, &HostReleases)>, &str)> = vec![
            (
                vec![("s1", &good), ("s2", &other)],
                "`staging` hosts disagree about their current release (20261124T190102Z on s1 but 20261124T180000Z on s2)",
            ),
            (
                vec![("s1", &good), ("s2", &failed)],
                "release 20261124T190102Z is not verified on `staging`: on s2 its deploy or smoke test failed",
            ),
            (vec![("s1", &none)], "`staging` has no current release to promote"),
        ];
        for (hosts, want) in cases {
            let err = candidate("staging", &hosts, None).unwrap_err();
            assert!(err.contains(want), "{err}\nwanted: {want}");
        }
    }

    fn gate(approvals: u32, soak_s: u64, approvers: &[&str], self_approval: bool) -> Gate {
        Gate {
            approvals,
            soak: Duration::from_secs(soak_s),
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            self_approval,
            approval_ttl: Duration::from_secs(86400),
            allowed_signers: None,
        }
    }

    fn cand() -> Candidate {
        Candidate {
            from_stage: "staging".into(),
            release: R.into(),
            commit: "c1".into(),
            digest: None,
            verified_at: Utc.with_ymd_and_hms(2026, 11, 24, 19, 0, 0).unwrap(),
            deployed_by: "dev".into(),
            deployed_at: String::new(),
        }
    }

    fn dec(user: &str, approved: bool, min: u32, sig: Option<bool>) -> Decision {
        Decision {
            user: user.into(),
            approved,
            time: Utc.with_ymd_and_hms(2026, 11, 24, 19, min, 0).unwrap(),
            expires: Utc.with_ymd_and_hms(2026, 11, 25, 19, 0, 0).unwrap(),
            signature_ok: sig,
        }
    }

    #[test]
    fn the_gate_says_which_condition_failed_and_what_satisfies_it() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 20, 0, 0).unwrap();
        type Case<'a> = (Gate, Vec<Decision>, &'a str, Result<Vec<&'a str>, &'a str>);
        let cases: Vec<Case> = vec![
            (gate(1, 0, &[], true), vec![], "alice", Err("has 0 of the 1 approval `production` needs")),
            (gate(1, 0, &[], true), vec![dec("bob", true, 1, None)], "alice", Ok(vec!["bob"])),
            (gate(0, 7200, &[], true), vec![], "alice", Err("needs a soak of 2h00m: it can be promoted after 2026-11-24T21:00:00Z (in 1h00m)")),
            (gate(1, 0, &["bob"], true), vec![dec("mallory", true, 1, None)], "alice", Err("mallory may not approve `production` (approvers: bob)")),
            (gate(1, 0, &[], false), vec![dec("alice", true, 1, None)], "alice", Err("the only approval of release 20261124T190102Z is by alice, who is promoting it")),
            (gate(1, 0, &[], true), vec![dec("alice", true, 1, None)], "alice", Ok(vec!["alice"])),
            (gate(1, 0, &[], true), vec![dec("bob", true, 1, Some(false))], "alice", Err("the approval by bob is not signed by a key in the allowed signers")),
            (gate(1, 0, &[], true), vec![dec("bob", true, 1, Some(true))], "alice", Ok(vec!["bob"])),
            (gate(1, 0, &[], true), vec![dec("bob", true, 1, None), dec("carol", false, 2, None)], "alice", Err("was rejected for `production` by carol")),
            // A later approval by the same person lifts their rejection.
            (gate(1, 0, &[], true), vec![dec("bob", false, 1, None), dec("bob", true, 2, None)], "alice", Ok(vec!["bob"])),
            (gate(2, 0, &[], false), vec![dec("alice", true, 1, None), dec("bob", true, 2, None)], "alice", Ok(vec!["alice", "bob"])),
        ];
        for (g, ds, promoter, want) in cases {
            let got = evaluate("production", Some(&g), &cand(), &ds, promoter, now);
            match (&got, &want) {
                (Ok(v), Ok(w)) => assert_eq!(v, w),
                (Err(e), Err(w)) => assert!(e.contains(w), "{e}\nwanted: {w}"),
                _ => panic!("got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn expired_approvals_do_not_count() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        let err = evaluate(
            "production",
            Some(&gate(1, 0, &[], true)),
            &cand(),
            &[dec("bob", true, 1, None)],
            "alice",
            now,
        )
        .unwrap_err();
        assert!(err.contains("the approval by bob has expired"), "{err}");
    }

    #[test]
    fn approval_lines_round_trip_and_the_payload_binds_commit_and_digest() {
        let mut e = entry(EventKind::Approved, R, "c1", "2026-11-24T19:05:00Z");
        e.stage = "production".into();
        e.user = "bob".into();
        e.digest = Some("sha256:ab".into());
        let a = ApprovalLine {
            entry: e,
            from_stage: "staging".into(),
            expires: "2026-11-25T19:05:00Z".into(),
            signature: None,
        };
        let line = serde_json::to_string(&a).unwrap();
        assert!(
            line.starts_with("{\"event\":\"approved\",\"release\":"),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<ApprovalLine>(&line).unwrap(), a);
        // Plain ledger readers still read it.
        assert_eq!(ledger::parse(&line).entries.len(), 1);
        let p = payload(&a);
        assert!(p.contains("commit: c1\ndigest: sha256:ab\napprover: bob\ndecision: approved\n"));
    }
}
