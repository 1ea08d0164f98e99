//! The JSON Schema of `deploy.yml` (`shipit schema`), derived from the raw
//! serde structs the loader reads, so the two cannot drift: a key the
//! loader refuses is one the schema refuses (`additionalProperties: false`
//! from `deny_unknown_fields`).
//!
//! The types with hand-written `Deserialize` impls in [`super::raw`] get
//! their schema here. The schema is JSON Schema draft-07, which editors'
//! YAML language servers read. It checks shapes and spellings; what needs
//! the whole file (a task's `after` naming a real step, host ranges, a
//! duration's size) stays with the loader.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use super::raw::{OrderedMap, RawBatch, RawConfig, RawDuration, RawMode};

/// What `#[derive(JsonSchema)]` cannot see: `10`, `30s`, `1h30m`, `500ms`.
const DURATION_PATTERN: &str = "^([0-9]+|([0-9]+(ms|s|m|h|d))+)$";

impl JsonSchema for RawDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: `30s`, `10m`, `2h`, `1d`, `500ms`, sums like `1h30m`, or a number of seconds.",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": DURATION_PATTERN }
            ]
        })
    }
}

impl JsonSchema for RawBatch {
    fn schema_name() -> Cow<'static, str> {
        "Batch".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Hosts per publish batch: a count like `2`, or a percentage of the stage like `25%`.",
            "oneOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": "^[0-9]+%?$" }
            ]
        })
    }
}

impl JsonSchema for RawMode {
    fn schema_name() -> Cow<'static, str> {
        "FileMode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An octal file mode, best quoted: `\"0600\"`.",
            "oneOf": [
                { "type": "integer", "minimum": 0, "maximum": 7777 },
                { "type": "string", "pattern": "^(0o)?[0-7]{1,5}$" }
            ]
        })
    }
}

impl<V: JsonSchema> JsonSchema for OrderedMap<V> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<V>()
        })
    }
}

/// The JSON Schema (draft-07) of `deploy.yml`.
pub fn deploy_yml() -> serde_json::Value {
    let mut schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RawConfig>();
    schema.insert("title".into(), "shipit deploy.yml".into());
    schema.insert(
        "description".into(),
        "shipit's configuration: what to deploy, where, and how (docs/deploy-yml.md)".into(),
    );
    schema.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_as_the_loader_refuses_them() {
        let s = deploy_yml();
        assert_eq!(s["additionalProperties"], false);
        let required: Vec<&str> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["application", "repository", "stages"]);
        let defs = &s["definitions"];
        for def in [
            "Ssh", "Task", "Stage", "Host", "Gate", "Rollout", "Template",
        ] {
            assert_eq!(defs[def]["additionalProperties"], false, "{def}");
        }
    }

    /// The schema accepts a duration exactly when the loader does.
    #[test]
    fn durations_follow_the_loader() {
        let validator = jsonschema::validator_for(&deploy_yml()).unwrap();
        let config = |timeout: serde_json::Value| {
            serde_json::json!({
                "application": "a", "repository": ".",
                "ssh": { "connect_timeout": timeout },
                "stages": { "s": { "hosts": [{ "host": "h" }] } }
            })
        };
        for ok in ["10", "30s", "1h30m", "500ms", "1d"] {
            assert!(validator.is_valid(&config(ok.into())), "{ok}");
            assert!(crate::config::parse_duration(ok).is_some(), "{ok}");
        }
        assert!(validator.is_valid(&config(15.into())));
        for bad in ["", "10 s", "1.5s", "-1s", "10x", "s"] {
            assert!(!validator.is_valid(&config(bad.into())), "{bad}");
            assert!(crate::config::parse_duration(bad).is_none(), "{bad}");
        }
        assert!(!validator.is_valid(&config((-1).into())));
    }
}
