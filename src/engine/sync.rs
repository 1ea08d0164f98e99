//! `shipit sync`: brings the hosts of a stage that have no current release
//! (a new instance of an autoscaling group, a replaced one) onto exactly
//! the release the others run: same id, commit and archive digest.
//!
//! The protocol: one `releases` read of every host of the stage (changing
//! nothing); [`decide`] finds the release every host with a `current`
//! agrees on and the hosts without one; the caller then deploys that
//! release, with its id fixed, to those hosts only, through the deploy
//! protocol (lock, stage, publish, smoke test, ledger). Hosts that are on
//! the release are left alone. Hosts that disagree, or a stage where no
//! host has a release, are refused.

use super::session::{parse_output, Ctx, Session};
use crate::config::{Config, Host};
use crate::ledger::EventKind;
use crate::plan::commands::HostPaths;
use crate::plan::host_step::{self, HostStep, SCRIPT_TIMEOUT};
use crate::plan::inspect::{self, HostReleases};
use crate::plan::Recipe;

/// The release the stage runs, and the hosts to bring onto it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub release: String,
    pub commit: String,
    /// The archive digest its ledger records (strategy copy).
    pub digest: Option<String>,
    /// The hosts running it, in stage order.
    pub on: Vec<String>,
    /// The hosts with no current release, in stage order.
    pub behind: Vec<String>,
}

/// A release as a host runs it: id, commit, archive digest.
type Running = (String, String, Option<String>);

/// A host's current release: id, commit (its `REVISION`, else the
/// ledger's) and digest (the ledger's), or `None` without one.
fn current_of(r: &HostReleases) -> Option<Running> {
    let id = r.current.clone()?;
    let revision = r
        .releases
        .iter()
        .find(|(rid, _)| *rid == id)
        .map(|(_, c)| c.clone())
        .unwrap_or_default();
    let of_id = || r.ledger.entries.iter().filter(|e| e.release == id);
    let commit = if revision.is_empty() {
        of_id()
            .map(|e| e.commit.clone())
            .find(|c| !c.is_empty())
            .unwrap_or_default()
    } else {
        revision
    };
    let digest = of_id()
        .filter(|e| e.event != EventKind::Failed)
        .filter_map(|e| e.digest.clone())
        .next_back();
    Some((id, commit, digest))
}

/// What sync does for `stage`, from each host's releases (in stage order):
/// the release every host with a `current` agrees on (id, commit and,
/// where recorded, digest) and the hosts without a `current`. Refused,
/// with the reason, when hosts disagree or none has a release.
pub fn decide(stage: &str, read: &[(&str, &HostReleases)]) -> Result<Decision, String> {
    let mut on: Vec<(&str, Running)> = Vec::new();
    let mut behind = Vec::new();
    for (name, r) in read {
        match current_of(r) {
            Some(c) => on.push((name, c)),
            None => behind.push(name.to_string()),
        }
    }
    let Some((_, (release, commit, _))) = on.first().cloned() else {
        return Err(format!(
            "no host of `{stage}` has a current release to sync from: deploy the stage first"
        ));
    };
    let differ: Vec<String> = on
        .iter()
        .filter(|(_, (id, c, _))| *id != release || *c != commit)
        .map(|(n, (id, c, _))| format!("`{n}` runs {id} ({})", &c[..c.len().min(12)]))
        .collect();
    if !differ.is_empty() {
        return Err(format!(
            "the hosts of `{stage}` disagree about the current release: `{}` runs {release} ({}), {}; deploy or roll back the stage first",
            on[0].0,
            &commit[..commit.len().min(12)],
            differ.join(", ")
        ));
    }
    let digests: Vec<&String> = on.iter().filter_map(|(_, (_, _, d))| d.as_ref()).collect();
    if digests.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!(
            "the hosts of `{stage}` record different archive digests for release {release}: refusing to guess which archive to sync"
        ));
    }
    Ok(Decision {
        release,
        commit,
        digest: digests.first().map(|d| d.to_string()),
        on: on.iter().map(|(n, _)| n.to_string()).collect(),
        behind,
    })
}

/// Reads every host of `hosts` (the whole stage); a host that cannot be
/// read is an error naming it, since sync needs every host's word.
pub async fn read(
    ctx: &Ctx,
    config: &Config,
    stage: &str,
    hosts: &[&Host],
) -> anyhow::Result<Vec<HostReleases>> {
    let mut session = Session::open(hosts, &config.ssh, ctx.clone()).await?;
    let step = HostStep {
        recipe: Recipe::Releases,
        stage: stage.to_string(),
        name: "releases".into(),
        timeout: SCRIPT_TIMEOUT,
        output: false,
    };
    let paths: Vec<HostPaths> = hosts.iter().map(|h| HostPaths::of(config, h)).collect();
    let plan = host_step::on_every_host(&step, hosts, |i| inspect::releases(&paths[i]));
    let runs = session.run_hosts(&plan).await;
    session.close().await;
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        match parse_output(r, "releases", inspect::parse_releases) {
            Ok(x) => out.push(x),
            Err(e) => bad.push(format!("`{}`: {e}", hosts[i].name)),
        }
    }
    if !bad.is_empty() {
        anyhow::bail!(
            "cannot read every host of `{stage}` (sync needs each one's current release): {}",
            bad.join("; ")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Entry, Parsed};

    fn entry(event: EventKind, release: &str, commit: &str, digest: Option<&str>) -> Entry {
        Entry {
            event,
            release: release.into(),
            commit: commit.into(),
            digest: digest.map(String::from),
            application: "shop".into(),
            stage: "production".into(),
            host: "h".into(),
            user: "u".into(),
            build_url: None,
            detail: None,
            time: "2026-12-04T10:00:00Z".into(),
        }
    }

    fn on(id: &str, commit: &str, digest: Option<&str>) -> HostReleases {
        HostReleases {
            deploy_to_exists: true,
            releases: vec![(id.into(), commit.into())],
            current: Some(id.into()),
            ledger: Parsed {
                entries: vec![
                    entry(EventKind::Staged, id, commit, digest),
                    entry(EventKind::Verified, id, commit, digest),
                ],
                bad_lines: vec![],
            },
        }
    }

    fn new_instance() -> HostReleases {
        HostReleases {
            deploy_to_exists: false,
            releases: vec![],
            current: None,
            ledger: Parsed::default(),
        }
    }

    #[test]
    fn the_agreed_release_and_the_hosts_without_one() {
        let (a, b, n) = (
            on("R1", "c1", Some("sha256:x")),
            on("R1", "c1", None),
            new_instance(),
        );
        let d = decide("production", &[("web-1", &a), ("web-9", &n), ("web-2", &b)]).unwrap();
        assert_eq!(
            d,
            Decision {
                release: "R1".into(),
                commit: "c1".into(),
                digest: Some("sha256:x".into()),
                on: vec!["web-1".into(), "web-2".into()],
                behind: vec!["web-9".into()],
            }
        );
    }

    #[test]
    fn disagreement_or_nothing_to_sync_from_is_refused() {
        let (a, b, n) = (on("R1", "c1", None), on("R2", "c2", None), new_instance());
        let e = decide("production", &[("web-1", &a), ("web-2", &b), ("web-3", &n)]).unwrap_err();
        assert!(
            e.contains("disagree") && e.contains("`web-2` runs R2 (c2)"),
            "{e}"
        );
        let same_id_other_commit = on("R1", "c9", None);
        let e = decide(
            "production",
            &[("web-1", &a), ("web-2", &same_id_other_commit)],
        )
        .unwrap_err();
        assert!(e.contains("disagree"), "{e}");
        let e = decide("production", &[("web-3", &n)]).unwrap_err();
        assert!(
            e.contains("no host of `production` has a current release"),
            "{e}"
        );
        let (x, y) = (
            on("R1", "c1", Some("sha256:a")),
            on("R1", "c1", Some("sha256:b")),
        );
        let e = decide("production", &[("web-1", &x), ("web-2", &y)]).unwrap_err();
        assert!(e.contains("different archive digests"), "{e}");
    }
}
