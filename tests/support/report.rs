//! What a CI job reads from shipit: JSON lines on stdout and the JUnit
//! report, checked the way a consumer would rely on them.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use super::project::text;

/// Every stdout line of `out` parsed as a JSON event, each with
/// `schema: 1`, the last one a `summary` whose `exit_code` is the
/// process's exit code.
#[track_caller]
pub fn json_events(out: &Output) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{}", text(out)))
        })
        .collect();
    assert!(!events.is_empty(), "no events\n{}", text(out));
    for e in &events {
        assert_eq!(e["schema"], 1, "every event carries schema 1: {e}");
        assert!(e["event"].is_string(), "every event names itself: {e}");
    }
    let last = events.last().expect("checked");
    assert_eq!(
        last["event"],
        "summary",
        "the last event is the summary\n{}",
        text(out)
    );
    assert_eq!(
        last["exit_code"].as_i64(),
        out.status.code().map(i64::from),
        "the summary's exit code is the process's\n{}",
        text(out)
    );
    events
}

/// Validates a JUnit report with xmllint against the schema Jenkins reads
/// (tests/fixtures/junit.xsd); returns its text.
#[track_caller]
pub fn valid_junit(path: &Path) -> String {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/junit.xsd");
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(path)
        .output()
        .expect("xmllint runs (scripts/test.sh installs libxml2-utils)");
    let xml = fs::read_to_string(path).unwrap();
    assert!(
        out.status.success(),
        "{} does not validate:\n{}\n{xml}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    xml
}
