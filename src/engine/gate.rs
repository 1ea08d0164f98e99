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
    /// With allowed signers: the promoter's signature, by whom (the allowed
    /// signers' principals for its key) and over what
    /// ([`promoted_payload`] at `signed_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The `ssh-keygen -Y` namespace a record of `kind` is signed in: one per
/// record type, so a signature over one kind never verifies as another.
pub fn namespace(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Approved => "shipit-approved",
        EventKind::Rejected => "shipit-rejected",
        EventKind::Promoted => "shipit-promoted",
        _ => "shipit-record",
    }
}

/// How far ahead of this machine's clock a recorded time may be before it
/// counts as "in the future" (clocks of hosts and people's machines drift).
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

fn skew() -> chrono::Duration {
    chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default()
}

/// A value in a signed text: JSON-quoted, so no value can end its line and
/// pass for another field.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// The exact text a decision's signature covers: every field that binds it
/// (application, both stages, release, commit, digest), who decided what,
/// and its time and expiry, so no field can be changed, and no line
/// re-dated, without breaking the signature.
pub fn payload(a: &ApprovalLine) -> String {
    format!(
        "shipit {} v2\napplication: {}\nstage: {}\nfrom: {}\nrelease: {}\ncommit: {}\ndigest: {}\nuser: {}\ntime: {}\nexpires: {}\n",
        if a.entry.event == EventKind::Rejected {
            "rejection"
        } else {
            "approval"
        },
        q(&a.entry.application),
        q(&a.entry.stage),
        q(&a.from_stage),
        q(&a.entry.release),
        q(&a.entry.commit),
        q(a.entry.digest.as_deref().unwrap_or("-")),
        q(&a.entry.user),
        q(&a.entry.time),
        q(&a.expires),
    )
}

/// What a promoter signs before a promotion: which release goes from where
/// to where, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotedClaim {
    pub application: String,
    pub stage: String,
    pub from_stage: String,
    pub from_release: String,
    pub commit: String,
    pub digest: Option<String>,
    pub time: String,
}

/// A promoter's signature over a [`PromotedClaim`]: by whom (the allowed
/// signers' principals of the key), at which time, the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoterSignature {
    pub signed_by: String,
    pub time: String,
    pub signature: String,
}

/// The exact text a promoter's signature covers.
pub fn promoted_payload(c: &PromotedClaim) -> String {
    format!(
        "shipit promotion v1\napplication: {}\nstage: {}\nfrom: {}\nfrom_release: {}\ncommit: {}\ndigest: {}\ntime: {}\n",
        q(&c.application),
        q(&c.stage),
        q(&c.from_stage),
        q(&c.from_release),
        q(&c.commit),
        q(c.digest.as_deref().unwrap_or("-")),
        q(&c.time),
    )
}

fn names(hosts: &[&str]) -> String {
    hosts.join(", ")
}

/// An RFC 3339 time, or `None` when it is not one.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Picks the candidate from FROM's hosts. `release` asks for a given
/// release instead of `current` (it must still be verified everywhere).
/// A `verified` record counts only when the release's REVISION on that
/// host is the record's commit, and its time parses and is not in the
/// future (after `now`, give or take [`CLOCK_SKEW`]). The error is a
/// refusal sentence.
pub fn candidate(
    from_stage: &str,
    hosts: &[(&str, &HostReleases)],
    release: Option<&str>,
    now: DateTime<Utc>,
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
                let Some(t) = parse_time(&e.time) else {
                    return Err(format!(
                        "the `verified` record of release {id} on {name} has a time that does not parse (`{}`): its soak cannot be counted",
                        e.time
                    ));
                };
                if t > now + skew() {
                    return Err(format!(
                        "the `verified` record of release {id} on {name} is dated {}, in the future: its soak cannot be counted",
                        e.time
                    ));
                }
                let revision = h
                    .releases
                    .iter()
                    .find(|(r, _)| *r == id)
                    .map(|(_, c)| c.as_str());
                match revision {
                    Some(c) if c == e.commit => {}
                    Some(c) if !c.is_empty() => {
                        return Err(format!(
                            "release {id} on {name} holds commit {} (its REVISION), but its `verified` record says {}: refusing to promote what was not verified",
                            short(c),
                            short(&e.commit)
                        ))
                    }
                    _ => {
                        return Err(format!(
                            "release {id} on {name} has no readable REVISION: its `verified` record (commit {}) cannot be checked",
                            short(&e.commit)
                        ))
                    }
                }
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

/// What a decision must be bound to, to count for a promotion.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub application: &'a str,
    pub to: &'a str,
    pub cand: &'a Candidate,
}

/// The line decides on this promotion: same application, target stage,
/// source stage, release, commit and archive digest.
fn bound(b: &Binding<'_>, a: &ApprovalLine) -> bool {
    matches!(a.entry.event, EventKind::Approved | EventKind::Rejected)
        && a.entry.application == b.application
        && a.entry.stage == b.to
        && a.from_stage == b.cand.from_stage
        && a.entry.release == b.cand.release
        && a.entry.commit == b.cand.commit
        && a.entry.digest == b.cand.digest
}

/// The same decision: every bound field, who, when, until when, and the
/// signature (the host it was written on and free notes aside).
fn same(a: &ApprovalLine, b: &ApprovalLine) -> bool {
    a.entry.event == b.entry.event
        && a.entry.application == b.entry.application
        && a.entry.stage == b.entry.stage
        && a.from_stage == b.from_stage
        && a.entry.release == b.entry.release
        && a.entry.commit == b.entry.commit
        && a.entry.digest == b.entry.digest
        && a.entry.user == b.entry.user
        && a.entry.time == b.entry.time
        && a.expires == b.expires
        && a.signature == b.signature
}

/// The decisions that concern this promotion, from every host of TO's
/// ledger: an approval counts only when the same line is on every host
/// (approvals are written to all of them); a rejection counts when it is
/// on any host (deleting it from some hosts does not lift it).
pub fn decisions_for(b: &Binding<'_>, per_host: &[Vec<ApprovalLine>]) -> Vec<ApprovalLine> {
    let Some(first) = per_host.first() else {
        return Vec::new();
    };
    let mut out: Vec<ApprovalLine> = first
        .iter()
        .filter(|a| a.entry.event == EventKind::Approved && bound(b, a))
        .filter(|a| {
            per_host[1..]
                .iter()
                .all(|other| other.iter().any(|x| same(a, x)))
        })
        .cloned()
        .collect();
    for a in per_host
        .iter()
        .flatten()
        .filter(|a| a.entry.event == EventKind::Rejected && bound(b, a))
    {
        if !out.iter().any(|x| same(a, x)) {
            out.push(a.clone());
        }
    }
    out
}

/// An approval or rejection as the gate weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub user: String,
    pub approved: bool,
    /// `None` when the line's time does not parse.
    pub time: Option<DateTime<Utc>>,
    /// `None` when the line's expiry does not parse.
    pub expires: Option<DateTime<Utc>>,
    /// `None` when the stage does not ask for signatures; else whether the
    /// signature verified against the allowed signers.
    pub signature_ok: Option<bool>,
}

pub fn to_decision(a: &ApprovalLine, signature_ok: Option<bool>) -> Decision {
    Decision {
        user: a.entry.user.clone(),
        approved: a.entry.event == EventKind::Approved,
        time: parse_time(&a.entry.time),
        expires: parse_time(&a.expires),
        signature_ok,
    }
}

/// `7200s` as `2h00m`, `90s` as `1m30s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// One rule of the gate and how it went: `detail` says what was found
/// when it passed, why not when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `source`, `trust_root`, `candidate`, `rejection`, `soak`,
    /// `approvals`, `self_approval` or `gate`.
    pub rule: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl Rule {
    pub fn pass(rule: &'static str, detail: impl Into<String>) -> Rule {
        Rule {
            rule,
            passed: true,
            detail: detail.into(),
        }
    }

    pub fn fail(rule: &'static str, detail: impl Into<String>) -> Rule {
        Rule {
            rule,
            passed: false,
            detail: detail.into(),
        }
    }
}

/// The gate's verdict: every rule it weighed, and the approvers that
/// count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateVerdict {
    pub rules: Vec<Rule>,
    pub approvers: Vec<String>,
}

impl GateVerdict {
    /// The approvers when every rule passed, else the first failed rule's
    /// reason.
    pub fn result(&self) -> Result<Vec<String>, String> {
        match self.rules.iter().find(|r| !r.passed) {
            Some(r) => Err(r.detail.clone()),
            None => Ok(self.approvers.clone()),
        }
    }

    pub fn passed(&self) -> bool {
        self.rules.iter().all(|r| r.passed)
    }
}

/// What the gate says. `promoter`: who is promoting — the name given
/// (`--as`, `SHIPIT_USER`) when approvals are not signed, the allowed
/// signers' principals of the promoter's key when they are. Logged
/// (`SHIPIT_LOG=debug`) with what it weighed.
pub fn evaluate(
    to: &str,
    gate: Option<&Gate>,
    cand: &Candidate,
    decisions: &[Decision],
    promoter: &[String],
    now: DateTime<Utc>,
) -> GateVerdict {
    for d in decisions {
        tracing::debug!(
            stage = to,
            user = %d.user,
            approved = d.approved,
            time = ?d.time,
            expires = ?d.expires,
            signature_ok = ?d.signature_ok,
            "gate: a recorded decision"
        );
    }
    let verdict = weigh(to, gate, cand, decisions, promoter, now);
    match verdict.result() {
        Ok(approvers) => tracing::debug!(
            stage = to,
            release = %cand.release,
            commit = %cand.commit,
            ?promoter,
            ?approvers,
            "gate passes"
        ),
        Err(why) => tracing::debug!(
            stage = to,
            release = %cand.release,
            commit = %cand.commit,
            ?promoter,
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
    promoter: &[String],
    now: DateTime<Utc>,
) -> GateVerdict {
    let Some(gate) = gate else {
        return GateVerdict {
            rules: vec![Rule::pass("gate", format!("`{to}` has no gate"))],
            approvers: Vec::new(),
        };
    };
    let s = Scales {
        to,
        gate,
        cand,
        now,
    };
    let (latest, ignored) = latest_words(decisions, now);
    let counted = s.approvals(&latest, ignored);
    let rules = vec![
        s.rejection_rule(&latest),
        s.soak_rule(),
        s.approvals_rule(&counted),
        s.self_approval_rule(&counted.valid, promoter),
    ];
    GateVerdict {
        rules,
        approvers: counted.valid,
    }
}

/// A decision that counts, at the time it carries.
type Word<'a> = (&'a Decision, DateTime<Utc>);

/// Each person's latest word, by the time the line carries (signed, when
/// signatures are required; on a tie the rejection), and the lines that do
/// not count, with why: shown, never weighed.
fn latest_words(decisions: &[Decision], now: DateTime<Utc>) -> (Vec<Word<'_>>, Vec<String>) {
    let mut ignored = Vec::new();
    let mut latest: Vec<Word<'_>> = Vec::new();
    for d in decisions {
        let what = if d.approved { "approval" } else { "rejection" };
        let t = match (d.signature_ok, d.time) {
            (Some(false), _) => {
                ignored.push(format!(
                    "the {what} by {} is not signed by a key in the allowed signers",
                    d.user
                ));
                continue;
            }
            (_, None) => {
                ignored.push(format!(
                    "the {what} by {} has a time that does not parse",
                    d.user
                ));
                continue;
            }
            (_, Some(t)) if t > now + skew() => {
                ignored.push(format!(
                    "the {what} by {} is dated {}, in the future",
                    d.user,
                    stamp(t)
                ));
                continue;
            }
            (_, Some(t)) => t,
        };
        match latest.iter_mut().find(|(x, _)| x.user == d.user) {
            Some(x) if t > x.1 || (t == x.1 && !d.approved) => *x = (d, t),
            Some(_) => {}
            None => latest.push((d, t)),
        }
    }
    (latest, ignored)
}

/// The approvals that count, and a note on those that do not.
struct Counted {
    valid: Vec<String>,
    notes: String,
}

/// What the gate's rules weigh against.
struct Scales<'a> {
    to: &'a str,
    gate: &'a Gate,
    cand: &'a Candidate,
    now: DateTime<Utc>,
}

impl Scales<'_> {
    fn allowed(&self, user: &str) -> bool {
        self.gate.approvers.is_empty() || self.gate.approvers.iter().any(|a| a == user)
    }

    fn who(&self) -> String {
        if self.gate.approvers.is_empty() {
            "anyone".to_string()
        } else {
            self.gate.approvers.join(" or ")
        }
    }

    /// A rejection that is someone's latest word blocks; it never expires.
    fn rejection_rule(&self, latest: &[Word<'_>]) -> Rule {
        let (to, cand) = (self.to, self.cand);
        match latest
            .iter()
            .find(|(d, _)| !d.approved && self.allowed(&d.user))
        {
            Some((r, t)) => Rule::fail(
                "rejection",
                format!(
                    "release {} (commit {}) was rejected for `{to}` by {} at {}: it cannot be promoted until {} approves it",
                    cand.release,
                    short(&cand.commit),
                    r.user,
                    stamp(*t),
                    r.user
                ),
            ),
            None => Rule::pass("rejection", "no rejection stands"),
        }
    }

    fn soak_rule(&self) -> Rule {
        let (to, cand, soak) = (self.to, self.cand, self.gate.soak);
        let ready_at = cand.verified_at + chrono::Duration::from_std(soak).unwrap_or_default();
        if self.now < ready_at {
            let left = (ready_at - self.now).to_std().unwrap_or_default();
            Rule::fail(
                "soak",
                format!(
                    "release {} was verified on `{}` at {}, and `{to}` needs a soak of {}: it can be promoted after {} (in {})",
                    cand.release,
                    cand.from_stage,
                    stamp(cand.verified_at),
                    human(soak),
                    stamp(ready_at),
                    human(left)
                ),
            )
        } else {
            Rule::pass(
                "soak",
                format!(
                    "verified on `{}` at {}; `{to}` needs a soak of {}",
                    cand.from_stage,
                    stamp(cand.verified_at),
                    human(soak)
                ),
            )
        }
    }

    /// The latest approvals by allowed approvers, unexpired, within the
    /// approval TTL.
    fn approvals(&self, latest: &[Word<'_>], ignored: Vec<String>) -> Counted {
        let ttl = chrono::Duration::from_std(self.gate.approval_ttl).unwrap_or_default();
        let mut notes = ignored;
        let (mut not_allowed, mut expired, mut too_long) = (Vec::new(), Vec::new(), Vec::new());
        let mut valid: Vec<String> = Vec::new();
        for (d, t) in latest.iter().filter(|(d, _)| d.approved) {
            match d.expires {
                _ if !self.allowed(&d.user) => not_allowed.push(d.user.clone()),
                None => notes.push(format!(
                    "the approval by {} has an expiry that does not parse",
                    d.user
                )),
                Some(e) if e <= self.now => expired.push(d.user.clone()),
                Some(e) if e - *t > ttl + skew() => too_long.push(d.user.clone()),
                Some(_) => valid.push(d.user.clone()),
            }
        }
        if !not_allowed.is_empty() {
            notes.push(format!(
                "{} may not approve `{}` (approvers: {})",
                not_allowed.join(", "),
                self.to,
                self.gate.approvers.join(", ")
            ));
        }
        if !expired.is_empty() {
            notes.push(format!(
                "the approval by {} has expired",
                expired.join(", ")
            ));
        }
        if !too_long.is_empty() {
            notes.push(format!(
                "the approval by {} runs longer than the gate's approval_ttl of {}",
                too_long.join(", "),
                human(self.gate.approval_ttl)
            ));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        Counted { valid, notes }
    }

    fn approvals_rule(&self, c: &Counted) -> Rule {
        let (to, cand, notes) = (self.to, self.cand, &c.notes);
        let need = self.gate.approvals as usize;
        if c.valid.len() < need {
            Rule::fail(
                "approvals",
                format!(
                    "release {} (commit {}) has {} of the {need} approval{} `{to}` needs{notes}: run `shipit approve {to}` as {}",
                    cand.release,
                    short(&cand.commit),
                    c.valid.len(),
                    if need == 1 { "" } else { "s" },
                    self.who()
                ),
            )
        } else if need == 0 {
            Rule::pass("approvals", format!("`{to}` needs no approval{notes}"))
        } else {
            Rule::pass(
                "approvals",
                format!("approved by {} (needs {need}){notes}", c.valid.join(", ")),
            )
        }
    }

    /// With `self_approval: false`, the promoter's own approval does not
    /// make up the count.
    fn self_approval_rule(&self, valid: &[String], promoter: &[String]) -> Rule {
        let (to, cand) = (self.to, self.cand);
        let need = self.gate.approvals as usize;
        let own: Vec<&String> = valid.iter().filter(|u| promoter.contains(u)).collect();
        let others = valid.len() - own.len();
        if self.gate.self_approval {
            Rule::pass("self_approval", format!("`{to}` has `self_approval: true`"))
        } else if need == 0 {
            Rule::pass("self_approval", format!("`{to}` needs no approval"))
        } else if others >= need || own.is_empty() {
            Rule::pass(
                "self_approval",
                "the approvals that count are by someone other than the promoter",
            )
        } else if others == 0 {
            Rule::fail(
                "self_approval",
                format!(
                    "the only approval of release {} is by {}, who is promoting it, and `{to}` has `self_approval: false`: it needs an approval by someone else ({})",
                    cand.release,
                    own[0],
                    self.who()
                ),
            )
        } else {
            Rule::fail(
                "self_approval",
                format!(
                    "release {} has {others} approval{} besides {}'s, who is promoting it, and `{to}` needs {need} with `self_approval: false`",
                    cand.release,
                    if others == 1 { "" } else { "s" },
                    own[0]
                ),
            )
        }
    }
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
            releases: current
                .map(|c| (c.to_string(), "c1".to_string()))
                .into_iter()
                .collect(),
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

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap()
    }

    #[test]
    fn the_candidate_is_current_and_verified_everywhere() {
        let a = verified_host("2026-11-24T19:01:05Z");
        let b = verified_host("2026-11-24T19:01:09Z");
        let c = candidate("staging", &[("s1", &a), ("s2", &b)], None, at(20, 0)).unwrap();
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
        let mut forged = verified_host("2026-11-24T19:01:05Z");
        forged.releases[0].1 = "c0ffee".into();
        let mut unreadable = verified_host("2026-11-24T19:01:05Z");
        unreadable.releases.clear();
        let garbled = verified_host("yesterday");
        let future = verified_host("2026-11-24T21:00:00Z");
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
            (
                vec![("s1", &good), ("s2", &forged)],
                "release 20261124T190102Z on s2 holds commit c0ffee (its REVISION), but its `verified` record says c1",
            ),
            (vec![("s1", &unreadable)], "on s1 has no readable REVISION"),
            (vec![("s1", &garbled)], "on s1 has a time that does not parse (`yesterday`)"),
            (vec![("s1", &future)], "on s1 is dated 2026-11-24T21:00:00Z, in the future"),
        ];
        for (hosts, want) in cases {
            let err = candidate("staging", &hosts, None, at(20, 0)).unwrap_err();
            assert!(err.contains(want), "{err}\nwanted: {want}");
        }
        // A few minutes ahead is clock skew, not the future.
        let skewed = verified_host("2026-11-24T20:04:00Z");
        assert!(candidate("staging", &[("s1", &skewed)], None, at(20, 0)).is_ok());
    }

    #[test]
    fn times_parse_only_as_rfc_3339() {
        assert_eq!(parse_time("2026-11-24T19:00:00Z"), Some(at(19, 0)));
        assert_eq!(parse_time("2026-11-24T20:00:00+01:00"), Some(at(19, 0)));
        for bad in [
            "",
            "yesterday",
            "2026-11-24",
            "2026-11-24 19:00:00",
            "1764010800",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
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
            verified_at: at(19, 0),
            deployed_by: "dev".into(),
            deployed_at: String::new(),
        }
    }

    fn dec(user: &str, approved: bool, min: u32, sig: Option<bool>) -> Decision {
        Decision {
            user: user.into(),
            approved,
            time: Some(at(19, min)),
            expires: Some(Utc.with_ymd_and_hms(2026, 11, 25, 19, 0, 0).unwrap()),
            signature_ok: sig,
        }
    }

    fn run(
        g: &Gate,
        ds: &[Decision],
        promoter: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, String> {
        evaluate(
            "production",
            Some(g),
            &cand(),
            ds,
            &[promoter.to_string()],
            now,
        )
        .result()
    }

    #[test]
    fn the_gate_says_which_condition_failed_and_what_satisfies_it() {
        let now = at(20, 0);
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
            (gate(1, 0, &[], true), vec![dec("bob", true, 1, None), dec("carol", false, 2, None)], "alice", Err("was rejected for `production` by carol at 2026-11-24T19:02:00Z")),
            // A later approval by the same person lifts their rejection.
            (gate(1, 0, &[], true), vec![dec("bob", false, 1, None), dec("bob", true, 2, None)], "alice", Ok(vec!["bob"])),
            // The promoter's own approval does not make up the count.
            (gate(2, 0, &[], false), vec![dec("alice", true, 1, None), dec("bob", true, 2, None)], "alice", Err("release 20261124T190102Z has 1 approval besides alice's, who is promoting it")),
            (gate(2, 0, &[], false), vec![dec("carol", true, 1, None), dec("bob", true, 2, None)], "alice", Ok(vec!["carol", "bob"])),
        ];
        for (g, ds, promoter, want) in cases {
            let got = run(&g, &ds, promoter, now);
            match (&got, &want) {
                (Ok(v), Ok(w)) => assert_eq!(v, w),
                (Err(e), Err(w)) => assert!(e.contains(w), "{e}\nwanted: {w}"),
                _ => panic!("got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn every_rule_is_reported_passed_or_why_not() {
        let v = evaluate(
            "production",
            Some(&gate(1, 7200, &[], false)),
            &cand(),
            &[dec("bob", true, 1, None)],
            &["alice".to_string()],
            at(20, 0),
        );
        let got: Vec<(&str, bool)> = v.rules.iter().map(|r| (r.rule, r.passed)).collect();
        assert_eq!(
            got,
            vec![
                ("rejection", true),
                ("soak", false),
                ("approvals", true),
                ("self_approval", true)
            ]
        );
        assert!(!v.passed());
        assert!(v.result().unwrap_err().contains("needs a soak of 2h00m"));
        let open = evaluate("production", None, &cand(), &[], &[], at(20, 0));
        assert!(open.passed());
        assert_eq!(open.rules[0].rule, "gate");
    }

    #[test]
    fn with_signers_only_signed_lines_count_ordered_by_their_signed_time() {
        let now = at(20, 0);
        let g = gate(1, 0, &[], true);
        // An unsigned approval, later, does not hide a signed rejection.
        let err = run(
            &g,
            &[
                dec("bob", true, 1, Some(true)),
                dec("carol", false, 2, Some(true)),
                dec("carol", true, 3, Some(false)),
            ],
            "alice",
            now,
        )
        .unwrap_err();
        assert!(err.contains("rejected for `production` by carol"), "{err}");
        // A tie goes to the rejection.
        let err = run(
            &g,
            &[
                dec("bob", true, 2, Some(true)),
                dec("bob", false, 2, Some(true)),
            ],
            "alice",
            now,
        )
        .unwrap_err();
        assert!(err.contains("rejected for `production` by bob"), "{err}");
        // Order in the file does not matter, the time does.
        let ok = run(
            &g,
            &[
                dec("bob", true, 3, Some(true)),
                dec("bob", false, 2, Some(true)),
            ],
            "alice",
            now,
        );
        assert_eq!(ok, Ok(vec!["bob".to_string()]));
        // Future-dated or unparsable lines are ignored, and said so.
        let mut future = dec("bob", true, 1, Some(true));
        future.time = Some(at(23, 0));
        let mut garbled = dec("carol", true, 1, Some(true));
        garbled.time = None;
        let err = run(
            &g,
            &[
                dec("dave", false, 1, Some(true)),
                dec("dave", true, 2, Some(true)),
                future,
                garbled,
            ],
            "alice",
            now,
        );
        assert_eq!(err, Ok(vec!["dave".to_string()]));
        let mut future = dec("bob", true, 1, Some(true));
        future.time = Some(at(23, 0));
        let err = run(&g, &[future], "alice", now).unwrap_err();
        assert!(
            err.contains("the approval by bob is dated 2026-11-24T23:00:00Z, in the future"),
            "{err}"
        );
    }

    #[test]
    fn rejections_never_expire_and_approvals_cannot_outlive_the_ttl() {
        let g = gate(1, 0, &[], true);
        let mut r = dec("carol", false, 1, None);
        r.expires = Some(at(19, 2));
        let err = run(&g, &[dec("bob", true, 3, None), r], "alice", at(20, 0)).unwrap_err();
        assert!(err.contains("rejected for `production` by carol"), "{err}");
        let mut long = dec("bob", true, 1, None);
        long.expires = Some(Utc.with_ymd_and_hms(2026, 12, 24, 19, 0, 0).unwrap());
        let err = run(&g, &[long], "alice", at(20, 0)).unwrap_err();
        assert!(
            err.contains("the approval by bob runs longer than the gate's approval_ttl of 24h00m"),
            "{err}"
        );
    }

    #[test]
    fn expired_approvals_do_not_count() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        let err = run(
            &gate(1, 0, &[], true),
            &[dec("bob", true, 1, None)],
            "alice",
            now,
        )
        .unwrap_err();
        assert!(err.contains("the approval by bob has expired"), "{err}");
    }

    #[test]
    fn self_approval_is_checked_against_every_identity_of_the_promoter() {
        // With signers, the promoter is every principal of their key.
        let v = evaluate(
            "production",
            Some(&gate(1, 0, &[], false)),
            &cand(),
            &[dec("alice", true, 1, Some(true))],
            &["jenkins".to_string(), "alice".to_string()],
            at(20, 0),
        );
        assert!(v
            .result()
            .unwrap_err()
            .contains("is by alice, who is promoting it"));
    }

    fn line(event: EventKind, user: &str) -> ApprovalLine {
        let mut e = entry(event, R, "c1", "2026-11-24T19:05:00Z");
        e.stage = "production".into();
        e.user = user.into();
        ApprovalLine {
            entry: e,
            from_stage: "staging".into(),
            expires: "2026-11-25T19:05:00Z".into(),
            signature: None,
        }
    }

    #[test]
    fn decisions_bind_every_field_approvals_everywhere_rejections_anywhere() {
        let c = cand();
        let b = Binding {
            application: "shop",
            to: "production",
            cand: &c,
        };
        let ok = line(EventKind::Approved, "bob");
        let tweak = |f: &dyn Fn(&mut ApprovalLine)| {
            let mut a = ok.clone();
            f(&mut a);
            a
        };
        // Bound to another application, source, target, release, commit,
        // digest: none counts.
        let others = vec![
            tweak(&|a| a.entry.application = "other".into()),
            tweak(&|a| a.from_stage = "dev".into()),
            tweak(&|a| a.entry.stage = "qa".into()),
            tweak(&|a| a.entry.release = "20261101T000000Z".into()),
            tweak(&|a| a.entry.commit = "c2".into()),
            tweak(&|a| a.entry.digest = Some("sha256:ab".into())),
        ];
        for o in &others {
            assert!(decisions_for(&b, &[vec![o.clone()]]).is_empty(), "{o:?}");
        }
        // An approval counts only when the same line is on every host: not
        // when another host's differs in a bound field, its time, or its
        // signature.
        assert_eq!(
            decisions_for(&b, &[vec![ok.clone()], vec![ok.clone()]]),
            vec![ok.clone()]
        );
        let mut host_b = ok.clone();
        host_b.entry.host = "other host".into();
        assert_eq!(
            decisions_for(&b, &[vec![ok.clone()], vec![host_b]]).len(),
            1
        );
        for differs in [
            tweak(&|a| a.entry.time = "2026-11-24T19:06:00Z".into()),
            tweak(&|a| a.from_stage = "dev".into()),
            tweak(&|a| a.entry.release = "x".into()),
            tweak(&|a| a.signature = Some("sig".into())),
        ] {
            assert!(
                decisions_for(&b, &[vec![ok.clone()], vec![differs.clone()]]).is_empty(),
                "{differs:?}"
            );
        }
        // A rejection on one host of three counts.
        let r = line(EventKind::Rejected, "carol");
        let got = decisions_for(
            &b,
            &[
                vec![ok.clone()],
                vec![ok.clone(), r.clone()],
                vec![ok.clone()],
            ],
        );
        assert_eq!(got, vec![ok.clone(), r.clone()]);
        // The same rejection on two hosts is one decision.
        let got = decisions_for(&b, &[vec![r.clone()], vec![r.clone()]]);
        assert_eq!(got, vec![r]);
    }

    #[test]
    fn approval_lines_round_trip_and_the_payload_binds_every_field() {
        let mut a = line(EventKind::Approved, "bob");
        a.entry.digest = Some("sha256:ab".into());
        let json = serde_json::to_string(&a).unwrap();
        assert!(
            json.starts_with("{\"event\":\"approved\",\"release\":"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<ApprovalLine>(&json).unwrap(), a);
        // Plain ledger readers still read it.
        assert_eq!(ledger::parse(&json).entries.len(), 1);
        let p = payload(&a);
        assert_eq!(
            p,
            "shipit approval v2\napplication: \"shop\"\nstage: \"production\"\nfrom: \"staging\"\nrelease: \"20261124T190102Z\"\ncommit: \"c1\"\ndigest: \"sha256:ab\"\nuser: \"bob\"\ntime: \"2026-11-24T19:05:00Z\"\nexpires: \"2026-11-25T19:05:00Z\"\n"
        );
        // Every field changes the payload; a value cannot spill into the
        // next line.
        type Change = Box<dyn Fn(&mut ApprovalLine)>;
        let fields: Vec<Change> = vec![
            Box::new(|a| a.entry.application = "other".into()),
            Box::new(|a| a.entry.stage = "qa".into()),
            Box::new(|a| a.from_stage = "dev".into()),
            Box::new(|a| a.entry.release = "x".into()),
            Box::new(|a| a.entry.commit = "c2".into()),
            Box::new(|a| a.entry.digest = None),
            Box::new(|a| a.entry.user = "bob\ndecision: rejected".into()),
            Box::new(|a| a.entry.time = "2026-11-24T19:06:00Z".into()),
            Box::new(|a| a.expires = "2026-11-26T19:05:00Z".into()),
            Box::new(|a| a.entry.event = EventKind::Rejected),
        ];
        for f in fields {
            let mut b = a.clone();
            f(&mut b);
            assert_ne!(payload(&b), p);
            assert_eq!(payload(&b).lines().count(), 10, "{}", payload(&b));
        }
        assert_ne!(
            namespace(EventKind::Approved),
            namespace(EventKind::Rejected)
        );
        assert_ne!(
            namespace(EventKind::Approved),
            namespace(EventKind::Promoted)
        );
    }
}
