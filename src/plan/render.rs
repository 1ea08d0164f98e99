//! Tera rendering of task commands and templates, per host.
//!
//! The context a template sees: `application`, `stage`, `host`, `roles`,
//! `release`, `commit`, `branch`, `deploy_to`, `release_path`,
//! `current_path`, every var (global, then the host's over them) at the top
//! level, and `env` (the environment of the shipit process, for secrets).

use std::collections::{BTreeMap, BTreeSet};

use tera::{Context, Tera};

use super::release::ReleaseInfo;
use crate::config::{Config, Host};
use crate::shell::join;

#[derive(Debug, thiserror::Error)]
#[error("cannot render {what} for host `{host}`: {reason}")]
pub struct RenderError {
    pub what: String,
    pub host: String,
    pub reason: String,
}

/// The context for one host.
pub fn context(
    config: &Config,
    host: &Host,
    release: &ReleaseInfo,
    env: &BTreeMap<String, String>,
) -> Context {
    let mut ctx = Context::new();
    for (k, v) in &host.vars {
        ctx.insert(k.as_str(), v);
    }
    ctx.insert("application", &config.application);
    ctx.insert("stage", &release.stage);
    ctx.insert("host", &host.name);
    ctx.insert("roles", &host.roles);
    ctx.insert("release", &release.id);
    ctx.insert("commit", &release.commit);
    ctx.insert("branch", &release.reference);
    ctx.insert("deploy_to", &host.deploy_to);
    ctx.insert(
        "release_path",
        &join(&host.deploy_to, &format!("releases/{}", release.id)),
    );
    ctx.insert("current_path", &join(&host.deploy_to, &config.current_path));
    ctx.insert("env", env);
    ctx
}

/// Renders `text` with `ctx`. `what` names it in errors (``task `build` ``).
pub fn render(text: &str, ctx: &Context, what: &str, host: &str) -> Result<String, RenderError> {
    Tera::one_off(text, ctx, false).map_err(|e| RenderError {
        what: what.to_string(),
        host: host.to_string(),
        reason: explain(&e),
    })
}

/// The host's `env:` with each value rendered with `ctx`, for export in
/// its commands.
pub fn host_env(host: &Host, ctx: &Context) -> Result<Vec<(String, String)>, RenderError> {
    host.env
        .iter()
        .map(|(name, value)| {
            let what = format!("`env.{name}`");
            Ok((name.clone(), render(value, ctx, &what, &host.name)?))
        })
        .collect()
}

/// tera nests the useful part of its errors in `source()`.
fn explain(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    let msg = parts.join(": ");
    if let Some(start) = msg.find("Variable `env.") {
        let name = msg[start + 14..].split('`').next().unwrap_or("");
        return format!("environment variable `{name}` is not set (it is read as `env.{name}`)");
    }
    msg.replace('\n', " ")
}

/// Names of environment variables a text reads as `env.NAME`: their values
/// are secrets and are redacted from all output.
pub fn referenced_env(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("env.") {
        let before_ok = i == 0
            || !rest[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
        let tail = &rest[i + 4..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if before_ok && !name.is_empty() {
            out.insert(name);
        }
        rest = tail;
    }
    out
}

/// Names of environment variables the hosts' `env:` values read as
/// `env.NAME`: redacted like those of tasks and templates.
pub fn env_references(config: &Config) -> BTreeSet<String> {
    let lb_commands = config
        .stages
        .iter()
        .filter_map(|s| s.load_balancer.as_ref())
        .flat_map(|lb| [&lb.drain.run, &lb.undrain.run]);
    let urls = config
        .tasks
        .iter()
        .filter_map(|t| t.http.as_ref())
        .map(|h| &h.url);
    config
        .stages
        .iter()
        .flat_map(|s| &s.hosts)
        .flat_map(|h| &h.env)
        .map(|(_, value)| value)
        .chain(lb_commands)
        .chain(urls)
        .flat_map(|value| referenced_env(value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_env_references() {
        let t = "{{ env.DB_PASSWORD }} and {{env.API_KEY|upper}} not {{ myenv.X }}";
        let names: Vec<_> = referenced_env(t).into_iter().collect();
        assert_eq!(
            names,
            vec!["API_KEY".to_string(), "DB_PASSWORD".to_string()]
        );
    }

    #[test]
    fn missing_env_is_named() {
        let mut ctx = Context::new();
        ctx.insert("env", &BTreeMap::<String, String>::new());
        let err = render("x={{ env.DB_PASSWORD }}", &ctx, "template `a`", "web-1").unwrap_err();
        assert!(
            err.to_string()
                .contains("environment variable `DB_PASSWORD` is not set"),
            "{err}"
        );
    }
}
