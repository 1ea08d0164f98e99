//! `deploy.yml` files that point shipit at a [`Fleet`], following the
//! contract in SPEC.md.

use std::fs;
use std::path::{Path, PathBuf};

use super::Fleet;

/// Tasks that record and fail on demand: `restart` appends the release id
/// to `deploy_to/restarts`; `smoke_test` fails on a host whose deploy_to
/// holds a `FAIL_SMOKE` file naming the release's commit (so the previous
/// release still passes there).
pub const HOOKS: &str = r#"tasks:
  restart:
    run: "echo \"$SHIPIT_RELEASE\" >> ../../restarts"
  smoke_test:
    run: "test \"$(cat ../../FAIL_SMOKE 2>/dev/null)\" != \"$(cat REVISION)\""
"#;

/// A `deploy.yml` with one stage, `stage`, holding every host of the fleet
/// by alias (role `app`, its own `deploy_to`), and `ssh:` pointing at the
/// fleet's ssh config with strict host key checking. `extra` is appended
/// as more top-level keys (`tasks:`, `linked_files:`...), written at
/// column 0.
pub fn render(fleet: &Fleet, stage: &str, repository: &str, extra: &str) -> String {
    let mut text = format!(
        "application: shop\n\
         repository: {repository}\n\
         branch: main\n\
         deploy_to: {deploy_to}\n\
         keep_releases: 5\n\
         ssh:\n  config_file: {config}\n  connect_timeout: 5s\n  host_key_checking: strict\n\
         stages:\n  {stage}:\n    hosts:\n",
        repository = yaml_str(repository),
        deploy_to = yaml_str(&fleet.dir().join("deploy").to_string_lossy()),
        config = yaml_str(&fleet.ssh_config().to_string_lossy()),
    );
    text.push_str(&hosts_yaml(fleet, 6));
    if !extra.is_empty() {
        text.push_str(extra);
        if !extra.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

/// Writes [`render`]'s text to `dir/deploy.yml` and returns the path.
pub fn write(dir: &Path, fleet: &Fleet, stage: &str, repository: &str, extra: &str) -> PathBuf {
    let path = dir.join("deploy.yml");
    fs::write(&path, render(fleet, stage, repository, extra)).expect("cannot write deploy.yml");
    path
}

/// The fleet's hosts as the items of a stage's `hosts:` list, indented by
/// `indent` spaces.
pub fn hosts_yaml(fleet: &Fleet, indent: usize) -> String {
    let pad = " ".repeat(indent);
    fleet
        .hosts()
        .iter()
        .map(|h| {
            format!(
                "{pad}- {{ host: {}, roles: [app], deploy_to: {} }}\n",
                h.alias,
                yaml_str(&h.deploy_to.to_string_lossy())
            )
        })
        .collect()
}

/// A double-quoted YAML scalar.
pub fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}
