//! Notify hooks: the tasks with `after: finished` (`local: true`), run on
//! this machine once a deploy (promote and sync included) or rollback has
//! ended, whatever its result, one after the other in file order. The
//! run's outcome is in their environment (`SHIPIT_RESULT`, ...) and, as
//! JSON, in the file `SHIPIT_OUTCOME_FILE` names, so a chat hook or a
//! deployment-metrics collector needs no parsing of shipit's output. A
//! hook's own failure is reported and changes nothing else. Pure: no I/O.

use serde::Serialize;

/// What a notify hook is told about the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOutcome {
    /// `deploy` or `rollback`.
    pub recipe: String,
    /// `success`, `failed`, `rollback_incomplete`, `interrupted`.
    pub result: String,
    pub application: String,
    pub stage: String,
    /// The release deployed (or rolled back to).
    pub release: String,
    pub commit: String,
    /// Commit time, epoch seconds, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_time: Option<i64>,
    /// What `current` was before the run (on the first host that had one).
    pub previous_release: String,
    pub previous_commit: String,
    /// Who ran shipit.
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_url: Option<String>,
    /// The summary's headline.
    pub headline: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: String,
    pub hosts: Vec<HostOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostOutcome {
    pub host: String,
    pub ok: bool,
    pub state: String,
}

impl RunOutcome {
    /// The `SHIPIT_*` variables; `file` is where [`RunOutcome::json`] was
    /// written.
    pub fn env(&self, file: &str) -> Vec<(String, String)> {
        [
            ("SHIPIT_RECIPE", self.recipe.clone()),
            ("SHIPIT_RESULT", self.result.clone()),
            ("SHIPIT_APPLICATION", self.application.clone()),
            ("SHIPIT_STAGE", self.stage.clone()),
            ("SHIPIT_RELEASE", self.release.clone()),
            ("SHIPIT_COMMIT", self.commit.clone()),
            (
                "SHIPIT_COMMIT_TIME",
                self.commit_time.map(|t| t.to_string()).unwrap_or_default(),
            ),
            ("SHIPIT_PREVIOUS_RELEASE", self.previous_release.clone()),
            ("SHIPIT_PREVIOUS_COMMIT", self.previous_commit.clone()),
            ("SHIPIT_USER", self.user.clone()),
            (
                "SHIPIT_BUILD_URL",
                self.build_url.clone().unwrap_or_default(),
            ),
            ("SHIPIT_STARTED_AT", self.started_at.clone()),
            ("SHIPIT_FINISHED_AT", self.finished_at.clone()),
            ("SHIPIT_OUTCOME_FILE", file.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The outcome as one JSON object (with `"schema": 1`).
    pub fn json(&self) -> String {
        let mut v = serde_json::to_value(self).expect("plain data");
        if let Some(o) = v.as_object_mut() {
            o.insert("schema".into(), serde_json::json!(1));
        }
        v.to_string()
    }
}

/// The word for an outcome in `SHIPIT_RESULT`.
pub fn result_word(outcome: crate::outcome::Outcome) -> &'static str {
    use crate::outcome::Outcome;
    match outcome {
        Outcome::Success => "success",
        Outcome::Failed => "failed",
        Outcome::GateRefused => "refused",
        Outcome::Locked => "locked",
        Outcome::RollbackIncomplete => "rollback_incomplete",
        Outcome::Interrupted => "interrupted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> RunOutcome {
        RunOutcome {
            recipe: "deploy".into(),
            result: "failed".into(),
            application: "shop".into(),
            stage: "production".into(),
            release: "20261204T100000Z".into(),
            commit: "c2".into(),
            commit_time: Some(1_780_000_000),
            previous_release: "20261203T100000Z".into(),
            previous_commit: "c1".into(),
            user: "alice".into(),
            build_url: None,
            headline: "1 of 2 hosts failed".into(),
            started_at: "2026-12-04T10:00:00Z".into(),
            finished_at: "2026-12-04T10:01:00Z".into(),
            hosts: vec![
                HostOutcome {
                    host: "web-1".into(),
                    ok: true,
                    state: "on 20261203T100000Z".into(),
                },
                HostOutcome {
                    host: "web-2".into(),
                    ok: false,
                    state: "failed".into(),
                },
            ],
        }
    }

    #[test]
    fn the_outcome_as_variables_and_json() {
        let o = outcome();
        let env = o.env("/tmp/x/outcome.json");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SHIPIT_RESULT"), Some("failed"));
        assert_eq!(get("SHIPIT_PREVIOUS_COMMIT"), Some("c1"));
        assert_eq!(get("SHIPIT_COMMIT_TIME"), Some("1780000000"));
        assert_eq!(get("SHIPIT_BUILD_URL"), Some(""));
        assert_eq!(get("SHIPIT_OUTCOME_FILE"), Some("/tmp/x/outcome.json"));
        let v: serde_json::Value = serde_json::from_str(&o.json()).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["result"], "failed");
        assert_eq!(v["hosts"][1]["ok"], false);
        assert!(v.get("build_url").is_none());
    }
}
