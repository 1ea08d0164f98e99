//! JSON lines: one object per event, for machines. Every field is
//! documented in docs/json-events.md; a change there is a change here.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::engine::event::{CheckStatus, Fact, Holder};
use crate::engine::{Event, StepOutcome, Summary};

/// The `schema` every event carries. Bumped when a field changes meaning or
/// goes away (adding one does not).
pub const SCHEMA: u32 = 1;

/// Steps that undo a run's work on a host rather than do it: reported as
/// `rollback_started` / `rollback` rather than as steps.
pub const UNDO_STEPS: [&str; 2] = ["switch_back", "discard_staged"];

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn opt(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

fn object(event: &str, fields: Value) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), Value::String(event.into()));
    m.insert("schema".into(), Value::from(SCHEMA));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m)
}

/// The object an event is written as, on a line of its own.
pub fn event(e: &Event) -> Value {
    match e {
        Event::RunStarted {
            recipe,
            stage,
            release,
            commit,
            reference,
            hosts,
        } => object(
            "run_started",
            json!({
                "recipe": recipe,
                "stage": stage,
                "release": opt(release),
                "commit": opt(commit),
                "reference": opt(reference),
                "hosts": hosts,
            }),
        ),
        Event::StepStarted { host, step } if UNDO_STEPS.contains(&step.as_str()) => {
            object("rollback_started", json!({ "host": host, "action": step }))
        }
        Event::StepStarted { host, step } => {
            object("step_started", json!({ "host": host, "step": step }))
        }
        Event::StepFinished {
            host,
            step,
            outcome,
            duration,
            tail,
        } => {
            let (ok, reason) = match outcome {
                StepOutcome::Ok => (true, Value::Null),
                StepOutcome::Failed(why) => (false, Value::String(why.clone())),
            };
            let common = json!({
                "host": host,
                "ok": ok,
                "duration_ms": ms(*duration),
                "exit_status": outcome.exit_status(),
                "reason": reason,
                "tail": tail,
            });
            if UNDO_STEPS.contains(&step.as_str()) {
                let mut v = object("rollback", common);
                v["action"] = Value::String(step.clone());
                v
            } else {
                let mut v = object(if ok { "step_finished" } else { "step_failed" }, common);
                v["step"] = Value::String(step.clone());
                v
            }
        }
        Event::Output {
            host,
            step,
            stdout,
            stderr,
        } => object(
            "output",
            json!({ "host": host, "step": step, "stdout": stdout, "stderr": stderr }),
        ),
        Event::BatchStarted { index, of, hosts } => object(
            "batch_started",
            json!({ "index": index, "of": of, "hosts": hosts }),
        ),
        Event::Notice(text) => object("notice", json!({ "message": text })),
        Event::Line { host, text } => object("line", json!({ "host": host, "text": text })),
        Event::Finished(s) => summary(s),
        Event::Fact { host, fact } => fact_object(host, fact),
        Event::History(h) => object(
            "history_entry",
            json!({
                "time": h.time,
                "kind": h.kind,
                "release": opt(&h.release),
                "commit": opt(&h.commit),
                "user": opt(&h.user),
                "detail": h.detail,
                "build_url": h.build_url,
                "hosts": h.hosts,
            }),
        ),
        Event::Approval(a) => object(
            "approval",
            json!({
                "decision": a.decision,
                "release": a.release,
                "commit": a.commit,
                "from_stage": a.from_stage,
                "stage": a.stage,
                "user": a.user,
                "signed": a.signed,
                "expires": a.expires,
            }),
        ),
        Event::Warning(m) => object("warning", json!({ "message": m })),
        Event::Report(lines) => object("report", json!({ "lines": lines })),
    }
}

fn holder(h: &Option<Holder>) -> Value {
    match h {
        None => Value::Null,
        Some(h) => json!({
            "user": h.user,
            "machine": h.machine,
            "pid": h.pid,
            "time": h.time,
            "message": h.message,
            "stale": h.stale,
        }),
    }
}

fn fact_object(host: &str, fact: &Fact) -> Value {
    match fact {
        Fact::Check {
            check,
            status,
            text,
        } => object(
            "check_result",
            json!({
                "host": host,
                "check": check,
                "status": match status {
                    CheckStatus::Ok => "ok",
                    CheckStatus::Failed => "failed",
                    CheckStatus::Warning => "warning",
                },
                "text": text,
            }),
        ),
        Fact::Releases {
            releases,
            current,
            deploy_to_exists,
        } => object(
            "host_releases",
            json!({
                "host": host,
                "current": current,
                "deploy_to_exists": deploy_to_exists,
                "releases": releases.iter().map(|r| json!({
                    "id": r.id,
                    "status": r.status,
                    "commit": opt(if r.commit == "-" { "" } else { &r.commit }),
                    "current": r.current,
                })).collect::<Vec<_>>(),
            }),
        ),
        Fact::Lock {
            state,
            holder: h,
            text,
        } => object(
            "lock_state",
            json!({ "host": host, "state": state, "holder": holder(h), "text": text }),
        ),
        Fact::Unread { reason } => object("host_unread", json!({ "host": host, "reason": reason })),
    }
}

fn summary(s: &Summary) -> Value {
    object(
        "summary",
        json!({
            "recipe": s.recipe,
            "stage": s.stage,
            "release": opt(&s.release),
            "commit": opt(&s.commit),
            "ok": s.ok,
            "headline": s.headline,
            "duration_ms": ms(s.duration),
            "exit_code": s.exit_code,
            "hosts": s.hosts.iter().map(|h| json!({
                "host": h.host,
                "ok": h.ok,
                "state": h.state,
                "commands": h.round_trips,
            })).collect::<Vec<_>>(),
        }),
    )
}

/// A step still running after a while.
pub fn heartbeat(host: &str, step: &str, running_for: Duration) -> Value {
    object(
        "heartbeat",
        json!({ "host": host, "step": step, "running_s": running_for.as_secs() }),
    )
}

/// The last line when a command ends with an error instead of a summary.
/// The `gate` event: a promotion gate's verdict, every rule it weighed
/// (passed, or why not), written before the promotion's deploy (or alone,
/// for `promote --check` and refusals).
pub fn gate(
    stage: &str,
    from_stage: &str,
    release: Option<&str>,
    commit: Option<&str>,
    rules: &[crate::engine::gate::Rule],
) -> Value {
    object(
        "gate",
        json!({
            "stage": stage,
            "from_stage": from_stage,
            "release": release,
            "commit": commit,
            "passed": rules.iter().all(|r| r.passed),
            "rules": rules
                .iter()
                .map(|r| json!({ "rule": r.rule, "passed": r.passed, "detail": r.detail }))
                .collect::<Vec<_>>(),
        }),
    )
}

pub fn error(message: &str, exit_code: u8) -> Value {
    object(
        "error",
        json!({ "message": message, "exit_code": exit_code }),
    )
}

/// One line of output: compact JSON, never containing a newline, with
/// `event` as the first key (the others follow in name order).
pub fn line(v: &Value) -> String {
    let to = |v: &Value| serde_json::to_string(v).expect("a JSON value serialises");
    let Value::Object(m) = v else {
        return to(v);
    };
    let Some(event) = m.get("event") else {
        return to(v);
    };
    let mut out = format!("{{\"event\":{}", to(event));
    for (k, x) in m.iter().filter(|(k, _)| *k != "event") {
        out.push(',');
        out.push_str(&to(&Value::String(k.clone())));
        out.push(':');
        out.push_str(&to(x));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HostSummary;

    fn one(e: Event) -> Value {
        let v = event(&e);
        // What goes on the wire parses back to the same object.
        let l = line(&v);
        assert!(!l.contains('\n'), "{l}");
        assert!(l.starts_with("{\"event\":\""), "{l}");
        assert_eq!(serde_json::from_str::<Value>(&l).unwrap(), v);
        v
    }

    #[test]
    fn run_started_carries_the_release() {
        let v = one(Event::RunStarted {
            recipe: "deploy".into(),
            stage: "staging".into(),
            release: "20261124T190102Z".into(),
            commit: "0123abcd".into(),
            reference: "main".into(),
            hosts: vec!["a".into(), "b".into()],
        });
        assert_eq!(
            v,
            json!({
                "event": "run_started", "schema": 1, "recipe": "deploy",
                "stage": "staging", "release": "20261124T190102Z", "commit": "0123abcd",
                "reference": "main", "hosts": ["a", "b"],
            })
        );
        let v = one(Event::RunStarted {
            recipe: "exec".into(),
            stage: "staging".into(),
            release: String::new(),
            commit: String::new(),
            reference: String::new(),
            hosts: vec![],
        });
        assert_eq!(v["release"], Value::Null);
        assert_eq!(v["commit"], Value::Null);
    }

    #[test]
    fn steps_finish_or_fail() {
        let ok = one(Event::StepFinished {
            host: "web-1".into(),
            step: "publish".into(),
            outcome: StepOutcome::Ok,
            duration: Duration::from_millis(210),
            tail: vec![],
        });
        assert_eq!(
            ok,
            json!({
                "event": "step_finished", "schema": 1, "host": "web-1", "step": "publish", "ok": true,
                "duration_ms": 210, "exit_status": 0, "reason": null, "tail": [],
            })
        );
        let failed = one(Event::StepFinished {
            host: "web-1".into(),
            step: "build".into(),
            outcome: StepOutcome::Failed("exit 2".into()),
            duration: Duration::from_secs(3),
            tail: vec!["make: *** no rule".into()],
        });
        assert_eq!(failed["event"], "step_failed");
        assert_eq!(failed["exit_status"], 2);
        assert_eq!(failed["reason"], "exit 2");
        assert_eq!(failed["tail"], json!(["make: *** no rule"]));
        let timed_out = one(Event::StepFinished {
            host: "web-1".into(),
            step: "build".into(),
            outcome: StepOutcome::Failed("timed out after 60s".into()),
            duration: Duration::from_secs(60),
            tail: vec![],
        });
        assert_eq!(timed_out["exit_status"], Value::Null);
    }

    #[test]
    fn undo_steps_are_rollbacks() {
        let started = one(Event::StepStarted {
            host: "web-1".into(),
            step: "switch_back".into(),
        });
        assert_eq!(
            started,
            json!({"event": "rollback_started", "schema": 1, "host": "web-1", "action": "switch_back"})
        );
        let done = one(Event::StepFinished {
            host: "web-1".into(),
            step: "switch_back".into(),
            outcome: StepOutcome::Ok,
            duration: Duration::from_millis(5),
            tail: vec![],
        });
        assert_eq!(done["event"], "rollback");
        assert_eq!(done["action"], "switch_back");
        assert_eq!(done["ok"], true);
        assert!(done.get("step").is_none());
    }

    #[test]
    fn summary_output_and_others() {
        let s = one(Event::Finished(Summary {
            recipe: "deploy".into(),
            stage: "staging".into(),
            release: "R".into(),
            commit: "C".into(),
            ok: false,
            headline: "staging failed on web-1".into(),
            hosts: vec![HostSummary {
                host: "web-1".into(),
                ok: false,
                state: "failed at build: exit 2".into(),
                round_trips: 3,
            }],
            duration: Duration::from_millis(1500),
            exit_code: 1,
        }));
        assert_eq!(
            s,
            json!({
                "event": "summary", "schema": 1, "recipe": "deploy", "stage": "staging", "release": "R",
                "commit": "C", "ok": false, "headline": "staging failed on web-1",
                "duration_ms": 1500, "exit_code": 1,
                "hosts": [{"host": "web-1", "ok": false, "state": "failed at build: exit 2", "commands": 3}],
            })
        );
        let o = one(Event::Output {
            host: "h".into(),
            step: "exec".into(),
            stdout: vec!["a \"quoted\" line".into()],
            stderr: vec!["\u{1b}[31mred\u{1b}[0m".into()],
        });
        assert_eq!(o["stdout"][0], "a \"quoted\" line");
        assert_eq!(o["stderr"][0], "\u{1b}[31mred\u{1b}[0m");
        assert_eq!(
            one(Event::BatchStarted {
                index: 1,
                of: 2,
                hosts: vec!["h".into()]
            }),
            json!({"event": "batch_started", "schema": 1, "index": 1, "of": 2, "hosts": ["h"]})
        );
        assert_eq!(
            one(Event::Notice("undoing".into())),
            json!({"event": "notice", "schema": 1, "message": "undoing"})
        );
        assert_eq!(
            error("unknown stage `x`", 2),
            json!({"event": "error", "schema": 1, "message": "unknown stage `x`", "exit_code": 2})
        );
        assert_eq!(
            heartbeat("h", "build", Duration::from_secs(31)),
            json!({"event": "heartbeat", "schema": 1, "host": "h", "step": "build", "running_s": 31})
        );
    }

    /// The exact lines of each fixed run (src/report/fixtures.rs).
    #[test]
    fn snapshots_of_the_fixed_runs() {
        for (name, events) in crate::report::fixtures::all() {
            let out: Vec<String> = events.iter().map(|e| line(&event(e))).collect();
            insta::assert_snapshot!(name, out.join("\n"));
        }
    }
}
