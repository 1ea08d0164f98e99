//! The target choice, verdicts and summary of a rollback, table by table,
//! and a rollback and its undo run for real over a local transport.

use super::*;
use crate::ledger;
use crate::plan::commands;
use crate::plan::commands::HostPaths;
use crate::plan::rollback::tests::{rel, work};
use crate::plan::rollback::{lock_and_read, steps, switch_back, undo_steps, TaskRun};

const A: &str = "20261120T080000Z";
const B: &str = "20261121T080000Z";
const C: &str = "20261122T080000Z";
const D: &str = "20261123T080000Z";

use crate::ledger::test_entry as entry;

/// A host with release dirs `ids`, `current`, and a ledger where each
/// release's events are given as words.
fn host(current: Option<&str>, ids: &[&str], events: &[(&str, &[&str])]) -> HostReleases {
    let mut entries = Vec::new();
    for (id, evs) in events {
        for ev in *evs {
            let kind: EventKind = serde_json::from_value(serde_json::json!(ev)).unwrap();
            entries.push(entry(kind, id));
        }
    }
    HostReleases {
        deploy_to_exists: true,
        releases: ids
            .iter()
            .map(|i| (i.to_string(), format!("rev-{i}")))
            .collect(),
        current: current.map(str::to_string),
        ledger: ledger::Parsed {
            entries,
            bad_lines: vec![],
        },
    }
}

const GOOD: &[&str] = &["staged", "published", "verified"];
const PUBLISHED: &[&str] = &["staged", "published"];
const FAILED: &[&str] = &["staged", "published", "failed"];
const ROLLED: &[&str] = &["staged", "published", "verified", "rolled_back"];

#[test]
fn choose_reads_the_ledger_for_the_previous_good_release() {
    let all = [A, B, C, D];
    // (case, host, --to, smoke here, force) -> target or error
    type Case<'a> = (
        &'a str,
        HostReleases,
        Option<&'a str>,
        bool,
        bool,
        Result<&'a str, NoTarget>,
    );
    let cases: Vec<Case> = vec![
        (
            "previous verified",
            host(Some(D), &all, &[(A, GOOD), (B, GOOD), (C, GOOD), (D, GOOD)]),
            None,
            true,
            false,
            Ok(C),
        ),
        (
            "skips failed and rolled back",
            host(
                Some(D),
                &all,
                &[(A, GOOD), (B, ROLLED), (C, FAILED), (D, GOOD)],
            ),
            None,
            true,
            false,
            Ok(A),
        ),
        (
            "published is not good with a smoke test",
            host(
                Some(D),
                &all,
                &[(A, GOOD), (B, GOOD), (C, PUBLISHED), (D, GOOD)],
            ),
            None,
            true,
            false,
            Ok(B),
        ),
        (
            "published is good without one",
            host(
                Some(D),
                &all,
                &[(A, GOOD), (B, GOOD), (C, PUBLISHED), (D, PUBLISHED)],
            ),
            None,
            false,
            false,
            Ok(C),
        ),
        (
            "only older than current",
            host(
                Some(B),
                &all,
                &[(A, GOOD), (B, GOOD), (C, ROLLED), (D, GOOD)],
            ),
            None,
            true,
            false,
            Ok(A),
        ),
        (
            "a release the ledger does not know is no target",
            host(Some(D), &all, &[(A, GOOD), (D, GOOD)]),
            None,
            true,
            false,
            Ok(A),
        ),
        (
            "the target must be a dir here",
            host(
                Some(D),
                &[A, D],
                &[(A, GOOD), (B, GOOD), (C, GOOD), (D, GOOD)],
            ),
            None,
            true,
            false,
            Ok(A),
        ),
        (
            "nothing older and good",
            host(Some(B), &all, &[(A, FAILED), (B, GOOD)]),
            None,
            true,
            false,
            Err(NoTarget::NoPrevious {
                current: B.into(),
                good: "`verified`",
            }),
        ),
        (
            "no current",
            host(None, &all, &[(A, GOOD)]),
            None,
            true,
            false,
            Err(NoTarget::NoCurrent),
        ),
        (
            "current is not a release dir",
            host(Some(D), &[A, B], &[(A, GOOD)]),
            None,
            true,
            false,
            Err(NoTarget::CurrentMissing(D.into())),
        ),
        (
            "--to an older good release",
            host(Some(D), &all, &[(A, GOOD), (B, GOOD), (C, GOOD), (D, GOOD)]),
            Some(A),
            true,
            false,
            Ok(A),
        ),
        (
            "--to a rolled back release rolls forward",
            host(Some(B), &all, &[(A, GOOD), (B, GOOD), (C, ROLLED)]),
            Some(C),
            true,
            false,
            Ok(C),
        ),
        (
            "--to current stays",
            host(Some(D), &all, &[(D, GOOD)]),
            Some(D),
            true,
            false,
            Ok(D),
        ),
        (
            "--to a missing release",
            host(Some(D), &[B, D], &[(A, GOOD)]),
            Some(A),
            true,
            false,
            Err(NoTarget::Missing(A.into())),
        ),
        (
            "--to a failed release",
            host(Some(D), &all, &[(C, FAILED), (D, GOOD)]),
            Some(C),
            true,
            false,
            Err(NoTarget::NotGood {
                id: C.into(),
                why: "marked `failed` in the ledger".into(),
            }),
        ),
        (
            "--to a failed release, forced",
            host(Some(D), &all, &[(C, FAILED), (D, GOOD)]),
            Some(C),
            true,
            true,
            Ok(C),
        ),
        (
            "--to a release the ledger does not know",
            host(Some(D), &all, &[(D, GOOD)]),
            Some(B),
            true,
            false,
            Err(NoTarget::NotGood {
                id: B.into(),
                why: "not in the ledger".into(),
            }),
        ),
    ];
    for (name, h, to, smoke, force, want) in cases {
        let got = choose(&h, to, smoke, force).map(|t| t.to.into_string());
        assert_eq!(got, want.map(str::to_string), "{name}");
    }
}

#[test]
fn choose_fills_commits_and_says_what_force_overrode() {
    let mut h = host(Some(C), &[A, B, C], &[(A, GOOD), (B, FAILED), (C, GOOD)]);
    // REVISION unreadable: the ledger's commit.
    h.releases[0].1.clear();
    h.ledger.entries[0].digest = Some("sha256:aa".into());
    h.ledger.entries[5].detail = Some("switched back to 20261120T080000Z".into());
    let t = choose(&h, None, true, false).unwrap();
    assert_eq!(
        t,
        Target {
            from: C.into(),
            from_commit: format!("rev-{C}").into(),
            to: A.into(),
            to_commit: format!("c-{A}").into(),
            to_digest: Some("sha256:aa".into()),
            forced: None,
        }
    );
    assert!(!t.stays());
    let t = choose(&h, Some(B), true, true).unwrap();
    assert_eq!(
        t.forced.as_deref(),
        Some("marked `failed` in the ledger (switched back to 20261120T080000Z)")
    );
    let e = choose(&h, Some(B), true, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "release 20261121T080000Z is marked `failed` in the ledger (switched back to \
             20261120T080000Z); --force rolls back to it anyway"
    );
    let e = choose(&host(Some(A), &[A], &[(A, GOOD)]), None, false, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no release to roll back to: none older than current 20261120T080000Z has \
             `verified` or `published` as its last ledger event"
    );
}

fn target(from: &str, to: &str) -> Target {
    Target {
        from: from.into(),
        from_commit: Commit::default(),
        to: to.into(),
        to_commit: Commit::default(),
        to_digest: None,
        forced: None,
    }
}

#[test]
fn disagreements_group_hosts_by_target_and_current() {
    let same = target(C, B);
    assert!(disagreements(&[("fleet-1", &same), ("fleet-2", &same)]).is_empty());
    assert!(disagreements(&[]).is_empty());
    let behind = target(B, A);
    assert_eq!(
        disagreements(&[("fleet-1", &same), ("fleet-2", &same), ("fleet-3", &behind)]),
        [
            format!("hosts disagree: target is {B} on fleet-1, fleet-2 but {A} on fleet-3"),
            format!("hosts disagree: current is {C} on fleet-1, fleet-2 but {B} on fleet-3"),
        ]
    );
    // Same target from different currents.
    let other = target(D, B);
    assert_eq!(
        disagreements(&[("a", &same), ("b", &other), ("c", &other)]),
        [format!(
            "hosts disagree: current is {D} on b, c but {C} on a"
        )]
    );
}
fn frames(ended: &[(usize, i32)], started: Option<usize>) -> Vec<Frame> {
    let mut v = Vec::new();
    for (id, status) in ended {
        v.push(Frame::Started(*id));
        v.push(Frame::Ended {
            id: *id,
            status: *status,
            stdout: vec![],
            stderr: if *status == 0 {
                vec![]
            } else {
                b"boom\n".to_vec()
            },
        });
    }
    if let Some(id) = started {
        v.push(Frame::Started(id));
    }
    v
}

#[test]
fn verdicts_follow_how_far_the_chain_got() {
    let p = HostPaths::new("/srv/shop");
    let (from, to) = (rel(B), rel(A));
    let s = steps(&work(&p, &from, &to));
    let lost = Some("lost `web-1`: broken pipe");
    let undo = |step: &'static str, why: &str| Verdict::Undo {
        step,
        why: why.into(),
    };
    // (ended steps, a step started without an end, transport error) -> verdict
    type Case<'a> = (&'a [(usize, i32)], Option<usize>, Option<&'a str>, Verdict);
    let cases: Vec<Case> = vec![
        (
            &[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)],
            None,
            None,
            Verdict::Done { unlocked: true },
        ),
        (
            &[(0, 0), (1, 0), (2, 0), (3, 0), (4, 1)],
            None,
            None,
            Verdict::Done { unlocked: false },
        ),
        (
            &[(0, 0), (1, 0), (2, 0), (3, 0)],
            None,
            lost,
            Verdict::Done { unlocked: false },
        ),
        (
            &[(0, 1)],
            None,
            None,
            Verdict::NotSwitched {
                why: "exited 1: boom".into(),
            },
        ),
        (&[], None, lost, undo(SWITCH, "lost `web-1`: broken pipe")),
        (
            &[(0, 0), (1, 1)],
            None,
            None,
            undo("restart", "exited 1: boom"),
        ),
        (
            &[(0, 0), (1, 0), (2, TIMEOUT_STATUS)],
            None,
            None,
            undo("smoke_test", "did not finish within 5s"),
        ),
        (
            &[(0, 0)],
            Some(1),
            lost,
            undo("restart", "lost `web-1`: broken pipe"),
        ),
        (
            &[(0, 0), (1, 0), (2, 0), (3, 1)],
            None,
            None,
            Verdict::Unrecorded {
                why: "exited 1: boom".into(),
            },
        ),
    ];
    for (ended, started, error, want) in cases {
        let r = reached(&s, &frames(ended, started), error);
        assert_eq!(verdict(&s, &r), want, "{ended:?} {started:?} {error:?}");
    }
    // Without any frame and without an error, nothing started.
    let r = reached(&s, &[], None);
    assert_eq!(
        verdict(&s, &r),
        Verdict::NotSwitched {
            why: "did not start".into()
        }
    );
}

#[test]
fn undo_verdicts_tell_back_from_stuck() {
    let p = HostPaths::new("/srv/shop");
    let (from, to) = (rel(B), rel(A));
    let u = undo_steps(&work(&p, &from, &to));
    let lost = Some("lost `web-1`: broken pipe");
    type Case<'a> = (&'a [(usize, i32)], Option<&'a str>, UndoVerdict);
    let cases: Vec<Case> = vec![
        (
            &[(0, 0), (1, 0), (2, 0), (3, 0)],
            None,
            UndoVerdict::Back { unlocked: true },
        ),
        (
            &[(0, 0), (1, 0), (2, 0)],
            lost,
            UndoVerdict::Back { unlocked: false },
        ),
        (
            &[(0, 0), (1, 1)],
            None,
            UndoVerdict::BackUnhealthy {
                step: "restart",
                why: "exited 1: boom".into(),
            },
        ),
        (
            &[(0, 1)],
            None,
            UndoVerdict::Stuck {
                why: "exited 1: boom".into(),
            },
        ),
        (
            &[],
            lost,
            UndoVerdict::Stuck {
                why: "lost `web-1`: broken pipe".into(),
            },
        ),
    ];
    for (ended, error, want) in cases {
        let r = reached(&u, &frames(ended, None), error);
        assert_eq!(undo_verdict(&u, &r), want, "{ended:?} {error:?}");
    }
}

mod summary_tests {
    use super::*;

    fn done(from: &str, to: &str) -> HostEnd {
        HostEnd::Done {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn summary_says_where_every_host_is() {
        // (hosts' ends, interrupted) -> (outcome, line)
        type Case<'a> = (Vec<(&'a str, HostEnd)>, bool, Outcome, String);
        let cases: Vec<Case> = vec![
            (
                vec![("fleet-1", done(B, A)), ("fleet-2", done(B, A))],
                false,
                Outcome::Success,
                format!("every host is on release {A} (was {B})"),
            ),
            (
                vec![
                    ("fleet-1", done(C, B)),
                    ("fleet-2", done(C, B)),
                    ("fleet-3", done(B, A)),
                ],
                false,
                Outcome::Success,
                format!(
                    "fleet-1, fleet-2 on release {B} (was {C}); fleet-3 on release {A} (was {B})"
                ),
            ),
            (
                vec![
                    ("fleet-1", done(B, A)),
                    ("fleet-2", HostEnd::Stayed { on: A.into() }),
                ],
                false,
                Outcome::Success,
                format!(
                    "fleet-1 on release {A} (was {B}); fleet-2 on release {A} (already)"
                ),
            ),
            (
                vec![
                    ("fleet-1", done(B, A)),
                    (
                        "fleet-2",
                        HostEnd::SwitchedBack {
                            on: B.into(),
                            step: "smoke_test".into(),
                            why: "exited 1".into(),
                        },
                    ),
                ],
                false,
                Outcome::Failed,
                format!(
                    "FAILED on fleet-2 (smoke_test failed; switched back to {B}); fleet-1 on release {A} (was {B})"
                ),
            ),
            (
                vec![
                    ("fleet-1", done(B, A)),
                    (
                        "fleet-2",
                        HostEnd::Stuck {
                            on: A.into(),
                            step: "restart".into(),
                            why: "exited 1".into(),
                            back_why: "lost".into(),
                        },
                    ),
                ],
                false,
                Outcome::RollbackIncomplete,
                format!(
                    "INCOMPLETE — needs a person: fleet-2 (restart failed and it could not be switched back: still on {A}); fleet-1 on release {A} (was {B})"
                ),
            ),
            (
                vec![
                    ("fleet-1", done(B, A)),
                    ("fleet-2", HostEnd::NotStarted { on: B.into() }),
                ],
                true,
                Outcome::Interrupted,
                format!(
                    "interrupted — not rolled back: fleet-2 (still on {B}); fleet-1 on release {A} (was {B})"
                ),
            ),
        ];
        for (ends, interrupted, outcome, line) in cases {
            assert_eq!(
                summary(&ends, interrupted),
                (outcome, line.clone()),
                "{line}"
            );
        }
    }
}

#[tokio::test]
async fn a_rollback_and_its_undo_run_for_real() {
    use crate::plan::chain::{self, ChainStep, FrameParser, RUNNER};
    use crate::transport::{local::LocalTransport, Transport};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("app dir");
    for id in [A, B] {
        std::fs::create_dir_all(d.join("releases").join(id)).unwrap();
        std::fs::write(d.join("releases").join(id).join("REVISION"), "x\n").unwrap();
    }
    std::os::unix::fs::symlink(format!("releases/{B}"), d.join("current")).unwrap();
    let p = HostPaths::new(d.to_str().unwrap());
    let t = LocalTransport::new("localhost");
    let lock = t
        .run(
            &lock_and_read(&p, "{\"token\":\"T1\"}"),
            None,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(lock.success(), "{}", lock.stderr_str());
    let state = inspect::parse_releases(&lock.stdout_str()).unwrap();
    assert_eq!(state.current.as_deref(), Some(B));
    assert_eq!(state.releases.len(), 2);
    assert!(d.join(".shipit/lock").exists());
    let held = t
        .run(
            &lock_and_read(&p, "{\"token\":\"T2\"}"),
            None,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(held.status, Some(commands::LOCKED_STATUS));
    assert!(held.stderr_str().contains("T1"), "{}", held.stderr_str());

    let (from, to) = (rel(B), rel(A));
    let run = |steps: Vec<RollbackStep>| {
        let t = t.clone();
        async move {
            let chain: Vec<ChainStep<'_>> = steps
                .iter()
                .enumerate()
                .map(|(i, s)| ChainStep {
                    id: i,
                    script: &s.script,
                    stdin: None,
                    timeout: s.timeout,
                })
                .collect();
            let script = chain::script(None, &chain);
            let out = t
                .run(RUNNER, Some(script.as_bytes()), Duration::from_secs(30))
                .await
                .unwrap();
            let frames = FrameParser::default().push(&out.stdout);
            reached(&steps, &frames, None)
        }
    };
    let w = work(&p, &from, &to);
    let s = steps(&w);
    assert_eq!(
        verdict(&s, &run(s.clone()).await),
        Verdict::Done { unlocked: true }
    );
    assert_eq!(
        std::fs::read_link(d.join("current")).unwrap(),
        std::path::Path::new(&format!("releases/{A}"))
    );
    assert!(d.join(format!("releases/{A}/restarted")).exists());
    assert!(!d.join(".shipit/lock").exists());
    let l = ledger::parse(&std::fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap());
    let events: Vec<(EventKind, &str)> = l
        .entries
        .iter()
        .map(|e| (e.event, e.release.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            (EventKind::RolledBack, B),
            (EventKind::Published, A),
            (EventKind::Verified, A)
        ]
    );
    assert_eq!(
        std::fs::read_to_string(d.join("revisions.log")).unwrap(),
        format!("alice rolled back to release {A}\n")
    );

    // From A back towards B, failing its smoke test: switched back.
    let mut w = work(&p, &to, &from);
    w.smoke_test = Some(TaskRun {
        run: "false".into(),
        env: Vec::new(),
        retries: 0,
        interval: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
        http: None,
    });
    let s = steps(&w);
    let v = verdict(&s, &run(s.clone()).await);
    assert!(
        matches!(
            v,
            Verdict::Undo {
                step: "smoke_test",
                ..
            }
        ),
        "{v:?}"
    );
    let u = undo_steps(&w);
    assert_eq!(
        undo_verdict(&u, &run(u.clone()).await),
        UndoVerdict::Back { unlocked: true }
    );
    assert_eq!(
        std::fs::read_link(d.join("current")).unwrap(),
        std::path::Path::new(&format!("releases/{A}"))
    );
    assert!(d.join(format!("releases/{A}/restarted-back")).exists());
    let l = ledger::parse(&std::fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap());
    let last: Vec<(EventKind, &str)> = l.entries[3..]
        .iter()
        .map(|e| (e.event, e.release.as_str()))
        .collect();
    assert_eq!(last, [(EventKind::Failed, B), (EventKind::Verified, A)]);
    // The undo of a host that was never switched leaves it alone.
    let out = t
        .run(
            &switch_back(&p, &from, "web-1", A),
            None,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(out.success());
    assert!(out.stdout_str().contains("not switched"));
    let l2 = ledger::parse(&std::fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap());
    assert_eq!(l2.entries.len(), l.entries.len());
}
