//! `shipit schema`: the JSON Schema of deploy.yml, for editors
//! (see [`crate::config::schema`]).

/// The schema as printed: pretty JSON and a final newline.
pub fn text() -> String {
    let mut s = serde_json::to_string_pretty(&crate::config::schema::deploy_yml())
        .expect("a serde_json::Value always serializes");
    s.push('\n');
    s
}
