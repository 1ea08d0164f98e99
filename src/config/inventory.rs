//! `hosts_from`: the hosts a stage's inventory commands print (an
//! autoscaling group's instances), merged with its static hosts when a
//! command needs the stage.
//!
//! Each command runs on this machine with `sh -c`, in the directory of
//! deploy.yml, with its `timeout`; it prints one host a line, `host` or
//! `host role,role` (blank lines and `#` comments are skipped). A printed
//! host gets its entry's `roles` when its line names none, and the global
//! `deploy_to`, ssh settings, vars and env. A host that is also listed in
//! `hosts` keeps its static entry; one printed twice is taken once.

use std::collections::HashSet;
use std::time::Duration;

use super::checks;
use super::model::{Config, Host, Inventory};

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("hosts_from `{run}` of stage `{stage}`: {reason}")]
    Command {
        run: String,
        stage: String,
        reason: String,
    },
    #[error("hosts_from `{run}` of stage `{stage}`, line {line}: {reason}")]
    Line {
        run: String,
        stage: String,
        line: usize,
        reason: String,
    },
    #[error("stage `{0}` has no hosts: its `hosts_from` printed none")]
    Empty(String),
}

/// One printed host: its name and the roles its line gave (empty: the
/// entry's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    pub name: String,
    pub roles: Vec<String>,
}

/// The hosts in `text`, a command's output; the error names the line
/// (1-based) and what is wrong with it.
pub fn parse(text: &str) -> Result<Vec<Printed>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default();
        if let Some(reason) = checks::unsafe_token(name, checks::HOST_EXTRA) {
            return Err((
                i + 1,
                format!("invalid host `{}`: {reason}", checks::show(name)),
            ));
        }
        let mut roles = Vec::new();
        if let Some(list) = words.next() {
            for role in list.split(',').filter(|r| !r.is_empty()) {
                if !checks::is_name(role) {
                    return Err((
                        i + 1,
                        format!(
                            "invalid role `{}` of host `{name}`, expected letters, digits, `_` or `-`",
                            checks::show(role)
                        ),
                    ));
                }
                if !roles.iter().any(|r| r == role) {
                    roles.push(role.to_string());
                }
            }
        }
        if let Some(extra) = words.next() {
            return Err((
                i + 1,
                format!(
                    "unexpected `{}` after the roles of host `{name}`, expected `host` or `host role,role`",
                    checks::show(extra)
                ),
            ));
        }
        out.push(Printed {
            name: name.to_string(),
            roles,
        });
    }
    Ok(out)
}

/// Adds what `printed` (by `inv`) names to `hosts`, skipping names already
/// there; returns the names added.
pub fn merge(hosts: &mut Vec<Host>, inv: &Inventory, printed: Vec<Printed>) -> Vec<String> {
    let mut seen: HashSet<String> = hosts.iter().map(|h| h.name.to_string()).collect();
    let mut added = Vec::new();
    for p in printed {
        if !seen.insert(p.name.clone()) {
            continue;
        }
        let mut h = inv.prototype.clone();
        h.name = p.name.clone().into();
        h.roles = if p.roles.is_empty() {
            inv.roles.clone()
        } else {
            p.roles
        };
        hosts.push(h);
        added.push(p.name);
    }
    added
}

/// Runs the `hosts_from` commands of `stage` (when it has any) and adds
/// the hosts they print to it. A stage left with no host at all is an
/// error.
pub async fn resolve(config: &mut Config, stage: &str) -> Result<(), InventoryError> {
    let base = config.base_dir.clone();
    let Some(st) = config.stages.iter_mut().find(|s| s.name == stage) else {
        return Ok(());
    };
    if st.hosts_from.is_empty() || !st.from_inventory.is_empty() {
        return Ok(());
    }
    for inv in st.hosts_from.clone() {
        let fail = |reason: String| InventoryError::Command {
            run: inv.run.clone(),
            stage: stage.to_string(),
            reason,
        };
        let text = run(&inv.run, &base, inv.timeout).await.map_err(fail)?;
        let printed = parse(&text).map_err(|(line, reason)| InventoryError::Line {
            run: inv.run.clone(),
            stage: stage.to_string(),
            line,
            reason,
        })?;
        for name in merge(&mut st.hosts, &inv, printed) {
            st.from_inventory.push((name.into(), inv.run.clone()));
        }
    }
    if st.hosts.is_empty() {
        return Err(InventoryError::Empty(stage.to_string()));
    }
    Ok(())
}

/// `sh -c run` in `dir`: its stdout, or why it failed (exit status and
/// the last lines of stderr, or the time limit).
async fn run(run: &str, dir: &std::path::Path, limit: Duration) -> Result<String, String> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(run)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| format!("cannot read its output: {e}"))?,
        Err(_) => {
            return Err(format!(
                "did not finish within {}s",
                limit.as_secs_f64().ceil() as u64
            ))
        }
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let status = match out.status.code() {
            Some(c) => format!("exit {c}"),
            None => "killed by a signal".to_string(),
        };
        return Err(if tail.is_empty() {
            format!("failed ({status})")
        } else {
            format!("failed ({status}): {}", tail.join(" / "))
        });
    }
    String::from_utf8(out.stdout).map_err(|_| "printed text that is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_hosts_and_maybe_roles() {
        let got = parse("# instances\nweb-1\n\n  web-2 app,worker,app  \n10.0.0.7 db\n").unwrap();
        assert_eq!(
            got,
            vec![
                Printed {
                    name: "web-1".into(),
                    roles: vec![]
                },
                Printed {
                    name: "web-2".into(),
                    roles: vec!["app".into(), "worker".into()]
                },
                Printed {
                    name: "10.0.0.7".into(),
                    roles: vec!["db".into()]
                },
            ]
        );
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, line, want) in [
            (
                "web-1\n-oProxyCommand=x\n",
                2,
                "invalid host `-oProxyCommand=x`",
            ),
            ("web-1 app;rm\n", 1, "invalid role `app;rm` of host `web-1`"),
            (
                "web-1 app extra\n",
                1,
                "unexpected `extra` after the roles of host `web-1`",
            ),
            ("a\nb\n$(x)\n", 3, "invalid host `$(x)`"),
        ] {
            let (l, reason) = parse(text).unwrap_err();
            assert_eq!(l, line, "{text:?}");
            assert!(reason.starts_with(want), "{text:?}: {reason}");
        }
    }

    fn host(name: &str, roles: &[&str]) -> Host {
        Host {
            name: name.to_string().into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            transport: crate::config::TransportKind::Ssh,
            deploy_to: "/srv/app".into(),
            user: None,
            port: None,
            vars: Default::default(),
            env: vec![],
        }
    }

    #[test]
    fn static_hosts_win_and_duplicates_are_taken_once() {
        let inv = Inventory {
            run: "x".into(),
            roles: vec!["app".into()],
            timeout: Duration::from_secs(1),
            prototype: host("", &[]),
        };
        let mut hosts = vec![host("web-1", &["db"])];
        let printed = parse("web-1\nweb-2\nweb-3 worker\nweb-2\n").unwrap();
        let added = merge(&mut hosts, &inv, printed);
        assert_eq!(added, ["web-2", "web-3"]);
        let roles: Vec<(String, Vec<String>)> = hosts
            .iter()
            .map(|h| (h.name.to_string(), h.roles.clone()))
            .collect();
        assert_eq!(
            roles,
            [
                ("web-1".to_string(), vec!["db".to_string()]),
                ("web-2".to_string(), vec!["app".to_string()]),
                ("web-3".to_string(), vec!["worker".to_string()]),
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_or_slow_command_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let e = run("echo nope >&2; exit 3", dir.path(), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(e, "failed (exit 3): nope");
        let e = run("exec sleep 30", dir.path(), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.starts_with("did not finish within"), "{e}");
        let out = run("pwd", dir.path(), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            std::path::Path::new(out.trim()).canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }
}
