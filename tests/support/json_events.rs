//! The JSON events as docs/json-events.md documents them: each event type
//! with exactly its fields, and every type and field named in the doc.

use std::fs;
use std::path::Path;

use serde_json::Value;

/// Asserts `v` has exactly these keys.
pub fn assert_keys(v: &Value, keys: &[&str]) {
    let mut got: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(|k| k.as_str())
        .collect();
    got.sort();
    let mut want = keys.to_vec();
    want.push("event");
    want.push("schema");
    assert_eq!(v["schema"], 1, "every event carries `schema: 1`: {v}");
    want.sort();
    assert_eq!(got, want, "{v}");
}

/// The fields docs/json-events.md documents, per event type.
pub fn assert_documented(events: &[Value]) {
    for e in events {
        let kind = e["event"].as_str().expect("every object has `event`");
        match kind {
            "run_started" => assert_keys(
                e,
                &["recipe", "stage", "release", "commit", "reference", "hosts"],
            ),
            "step_started" => assert_keys(e, &["host", "step"]),
            "step_finished" | "step_failed" => assert_keys(
                e,
                &[
                    "host",
                    "step",
                    "ok",
                    "duration_ms",
                    "exit_status",
                    "reason",
                    "tail",
                ],
            ),
            "rollback_started" => assert_keys(e, &["host", "action"]),
            "rollback" => assert_keys(
                e,
                &[
                    "host",
                    "action",
                    "ok",
                    "duration_ms",
                    "exit_status",
                    "reason",
                    "tail",
                ],
            ),
            "output" => assert_keys(e, &["host", "step", "stdout", "stderr"]),
            "batch_started" => assert_keys(e, &["index", "of", "hosts"]),
            "notice" => assert_keys(e, &["message"]),
            "heartbeat" => assert_keys(e, &["host", "step", "running_s"]),
            "summary" => {
                assert_keys(
                    e,
                    &[
                        "recipe",
                        "stage",
                        "release",
                        "commit",
                        "ok",
                        "headline",
                        "duration_ms",
                        "exit_code",
                        "hosts",
                    ],
                );
                for h in e["hosts"].as_array().unwrap() {
                    assert_eq!(
                        h.as_object().unwrap().keys().collect::<Vec<_>>(),
                        vec!["commands", "host", "ok", "state"],
                        "{h}"
                    );
                }
            }
            "error" => assert_keys(e, &["message", "exit_code"]),
            "check_result" => assert_keys(e, &["host", "check", "status", "text"]),
            "host_releases" => {
                assert_keys(e, &["host", "current", "deploy_to_exists", "releases"]);
                for r in e["releases"].as_array().unwrap() {
                    assert_eq!(
                        r.as_object().unwrap().keys().collect::<Vec<_>>(),
                        vec!["commit", "current", "id", "status"],
                        "{r}"
                    );
                }
            }
            "history_entry" => assert_keys(
                e,
                &[
                    "time",
                    "kind",
                    "release",
                    "commit",
                    "user",
                    "detail",
                    "build_url",
                    "hosts",
                ],
            ),
            "lock_state" => {
                assert_keys(e, &["host", "state", "holder", "text"]);
                if let Some(h) = e["holder"].as_object() {
                    assert_eq!(
                        h.keys().collect::<Vec<_>>(),
                        vec!["machine", "message", "pid", "stale", "time", "user"],
                        "{e}"
                    );
                }
            }
            "host_unread" => assert_keys(e, &["host", "reason"]),
            "approval" => assert_keys(
                e,
                &[
                    "decision",
                    "release",
                    "commit",
                    "from_stage",
                    "stage",
                    "user",
                    "signed",
                    "expires",
                ],
            ),
            "gate" => {
                assert_keys(
                    e,
                    &[
                        "stage",
                        "from_stage",
                        "release",
                        "commit",
                        "passed",
                        "rules",
                    ],
                );
                for r in e["rules"].as_array().unwrap() {
                    assert_eq!(
                        r.as_object().unwrap().keys().collect::<Vec<_>>(),
                        vec!["detail", "passed", "rule"],
                        "{r}"
                    );
                }
            }
            "warning" => assert_keys(e, &["message"]),
            "report" => assert_keys(e, &["lines"]),
            "line" => assert_keys(e, &["host", "text"]),
            other => panic!("undocumented event type `{other}`: {e}"),
        }
    }
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-events.md"))
        .expect("docs/json-events.md exists");
    for e in events {
        let kind = e["event"].as_str().unwrap();
        assert!(
            doc.contains(&format!("`{kind}`")),
            "docs/json-events.md does not document `{kind}`"
        );
        for k in e.as_object().unwrap().keys() {
            assert!(
                doc.contains(&format!("`{k}`")),
                "docs/json-events.md does not document field `{k}`"
            );
        }
    }
}
