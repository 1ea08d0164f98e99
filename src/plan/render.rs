//! Tera rendering of task commands and templates, per host.
//!
//! The context a template sees: `application`, `stage`, `host`, `roles`,
//! `release`, `commit`, `branch`, `deploy_to`, `release_path`,
//! `current_path`, every var (global, then the host's over them) at the top
//! level, `env` (the environment variables the text reads as `env.NAME`:
//! redacted) and `secrets` (the stage's secrets the text reads as
//! `secrets.NAME`: redacted).
//!
//! Commands are rendered with a shell-quoting escape: `{{ motto }}` is one
//! word whatever it holds, quoted for where it sits (outside quotes, in
//! `'…'` or in `"…"`; refused inside `$( )`, backticks or a
//! here-document); `{{ x | safe }}` inserts `x` as shell code, and
//! [`unquoted_insertions`] lets `plan` show where. Nothing else of the
//! environment is reachable: tera's `get_env()` and the `__tera_context`
//! dump are refused, and `env`/`secrets` hold only the names the text
//! itself reads.

use std::collections::{BTreeMap, BTreeSet};

use tera::{Context, Tera};

use super::release::ReleaseInfo;
use crate::config::{Config, Host};
use crate::redact::Redactor;
use crate::shell::{join, quote_path};

/// The one template name of a render; commands are escaped by suffix.
const COMMAND: &str = "shipit-command";
const FILE: &str = "shipit-template";

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
    // The whole environment and every secret sit here; [`render`] hands a
    // text only the names it reads.
    ctx.insert("env", env);
    ctx.insert("secrets", config.secret_values.map());
    ctx
}

/// Renders the shell command `text` with `ctx`, every inserted value
/// quoted as one shell word (unless marked `| safe`). `what` names it in
/// errors (``task `build` ``).
pub fn render(text: &str, ctx: &Context, what: &str, host: &str) -> Result<String, RenderError> {
    render_as(text, ctx, what, host, true)
}

/// Renders the template file `text` with `ctx`: values are inserted as
/// they are (a file is not shell code).
pub fn render_template(
    text: &str,
    ctx: &Context,
    what: &str,
    host: &str,
) -> Result<String, RenderError> {
    render_as(text, ctx, what, host, false)
}

fn render_as(
    text: &str,
    ctx: &Context,
    what: &str,
    host: &str,
    command: bool,
) -> Result<String, RenderError> {
    let fail = |reason: String| RenderError {
        what: what.to_string(),
        host: host.to_string(),
        reason,
    };
    if text.contains("__tera_context") {
        return Err(fail(
            "`__tera_context` is not available: read environment variables as `env.NAME` and secrets as `secrets.NAME`".into(),
        ));
    }
    let name = if command { COMMAND } else { FILE };
    let mut tera = Tera::default();
    tera.register_function("get_env", refuse_get_env);
    if command {
        if text.contains([OPEN, CLOSE]) {
            return Err(fail(
                "the command holds a private-use character (U+E000 or U+E001)".into(),
            ));
        }
        tera.autoescape_on(vec![COMMAND]);
        tera.set_escape_fn(mark);
    } else {
        tera.autoescape_on(vec![]);
    }
    let ctx = only_what_is_read(text, ctx);
    // tera quotes a value its filter refused (`got "hunter2"`): errors go
    // out masked like everything else.
    let masked = |e: tera::Error| {
        let values = ["env", "secrets"]
            .into_iter()
            .flat_map(|key| match ctx.get(key) {
                Some(serde_json::Value::Object(m)) => m
                    .values()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            });
        let values: Vec<String> = values.collect();
        let redactor = Redactor::default().and_values(&values).with_quoted_forms();
        fail(redactor.apply(&explain(&e)).into_owned())
    };
    tera.add_raw_template(name, text).map_err(masked)?;
    let rendered = tera.render(name, &ctx).map_err(masked)?;
    if command {
        place_values(&rendered).map_err(fail)
    } else {
        Ok(rendered)
    }
}

/// `ctx` with `env` and `secrets` cut down to the names `text` reads.
fn only_what_is_read(text: &str, ctx: &Context) -> Context {
    let mut ctx = ctx.clone();
    for (key, names) in [
        ("env", referenced_env(text)),
        ("secrets", referenced_secrets(text)),
    ] {
        let kept: serde_json::Map<String, serde_json::Value> = match ctx.get(key) {
            Some(serde_json::Value::Object(all)) => all
                .iter()
                .filter(|(k, _)| names.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => serde_json::Map::new(),
        };
        ctx.insert(key, &kept);
    }
    ctx
}

/// tera's `get_env()` would read any environment variable, unredacted.
fn refuse_get_env(_: &std::collections::HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    Err(tera::Error::msg(
        "`get_env()` is not available: read environment variables as `env.NAME` (declared and redacted)",
    ))
}

/// The escape of commands: a value as one shell word. Words that need no
/// quoting stay as they are (`8080`, `web-1`, `/srv/app`) so commands
/// read naturally; a leading `~/` still means the login home.
pub fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        quote_path(s)
    }
}

/// Marks a value inserted into a command while tera renders it; the marks
/// are replaced by [`place_values`] once it knows where each value sits.
const OPEN: char = '\u{e000}';
const CLOSE: char = '\u{e001}';

/// The escape of commands while rendering: the value between marks (marks
/// inside it are replaced, so a value cannot end its own).
fn mark(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 6);
    out.push(OPEN);
    out.extend(s.chars().map(|c| {
        if c == OPEN || c == CLOSE {
            '\u{fffd}'
        } else {
            c
        }
    }));
    out.push(CLOSE);
    out
}

const NESTED: &str = "a value inside `$( )`, backticks, `${ }` or a here-document cannot be quoted there: set a variable before it (`v={{ x }}; echo \"$(cmd \"$v\")\"`) or mark it `| safe`";
const AFTER_BACKSLASH: &str =
    "a value right after a `\\` cannot be quoted: remove the backslash or mark the value `| safe`";

/// Where a value sits in a command, as sh would read the text before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// Outside quotes, or inside `$( )` (counting its parentheses).
    Plain {
        parens: u32,
    },
    Single,
    Double,
    Backtick,
    /// `${ … }`.
    Brace,
}

/// Replaces each marked value of a rendered command by the quoting that
/// makes it literal where it sits: outside quotes one single-quoted word
/// ([`shell_word`]); inside `'…'` with each `'` written `'\''`; inside
/// `"…"` with `$`, `` ` ``, `"` and `\` escaped. A value inside `$( )`,
/// backticks, `${ }` or a here-document is refused: `why` says so.
fn place_values(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut stack = vec![Frame::Plain { parens: 0 }];
    // Here-documents whose bodies start at the next newline.
    let mut pending: Vec<(String, bool)> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let top = *stack.last().expect("never empty");
        if c == OPEN {
            let end = chars[i + 1..]
                .iter()
                .position(|&c| c == CLOSE)
                .map(|n| i + 1 + n)
                .ok_or("a value's end is missing")?;
            let value: String = chars[i + 1..end].iter().collect();
            let placed = match (stack.len(), top) {
                (1, Frame::Plain { .. }) => shell_word(&value),
                (2, Frame::Single) => value.replace('\'', "'\\''"),
                (2, Frame::Double) => value
                    .chars()
                    .flat_map(|c| {
                        let esc = matches!(c, '$' | '`' | '"' | '\\');
                        esc.then_some('\\').into_iter().chain([c])
                    })
                    .collect(),
                _ => return Err(NESTED.into()),
            };
            out.push_str(&placed);
            i = end + 1;
            continue;
        }
        out.push(c);
        i += 1;
        let next = chars.get(i).copied();
        match top {
            Frame::Single => {
                if c == '\'' {
                    stack.pop();
                }
            }
            Frame::Double | Frame::Backtick | Frame::Brace | Frame::Plain { .. } => {
                match (top, c) {
                    (_, '\\') => {
                        if let Some(n) = next {
                            if n == OPEN {
                                return Err(AFTER_BACKSLASH.into());
                            }
                            out.push(n);
                            i += 1;
                        }
                    }
                    (Frame::Double, '"') | (Frame::Backtick, '`') | (Frame::Brace, '}') => {
                        stack.pop();
                    }
                    (_, '$') if next == Some('(') => {
                        out.push('(');
                        i += 1;
                        stack.push(Frame::Plain { parens: 1 });
                    }
                    (_, '$') if next == Some('{') => {
                        out.push('{');
                        i += 1;
                        stack.push(Frame::Brace);
                    }
                    // Command substitution works inside double quotes too.
                    (_, '`') => stack.push(Frame::Backtick),
                    (Frame::Double, _) => {}
                    (_, '"') => stack.push(Frame::Double),
                    (_, '\'') => stack.push(Frame::Single),
                    (Frame::Plain { parens }, '(') => {
                        *stack.last_mut().expect("never empty") =
                            Frame::Plain { parens: parens + 1 };
                    }
                    (Frame::Plain { parens }, ')') if parens > 0 => {
                        if parens == 1 && stack.len() > 1 {
                            stack.pop();
                        } else {
                            *stack.last_mut().expect("never empty") =
                                Frame::Plain { parens: parens - 1 };
                        }
                    }
                    (Frame::Plain { .. }, '#')
                        if out.len() == 1
                            || out[..out.len() - 1]
                                .ends_with(|p: char| p.is_whitespace() || ";&|(".contains(p)) =>
                    {
                        // A comment: to the end of the line, values and all.
                        while i < chars.len() && chars[i] != '\n' {
                            if chars[i] != OPEN && chars[i] != CLOSE {
                                out.push(chars[i]);
                            }
                            i += 1;
                        }
                    }
                    // `<<<`, a here-string: a word like any other.
                    (Frame::Plain { .. }, '<')
                        if next == Some('<') && chars.get(i + 1) == Some(&'<') =>
                    {
                        out.push_str("<<");
                        i += 2;
                    }
                    (Frame::Plain { .. }, '<') if next == Some('<') => {
                        out.push('<');
                        i += 1;
                        let strip = chars.get(i) == Some(&'-');
                        if strip {
                            out.push('-');
                            i += 1;
                        }
                        while chars.get(i).is_some_and(|c| *c == ' ' || *c == '\t') {
                            out.push(chars[i]);
                            i += 1;
                        }
                        let mut word = String::new();
                        while let Some(&c) = chars.get(i) {
                            if c.is_whitespace() || ";&|<>()".contains(c) || c == OPEN {
                                break;
                            }
                            out.push(c);
                            word.push(c);
                            i += 1;
                        }
                        let delimiter: String =
                            word.chars().filter(|c| !"'\"\\".contains(*c)).collect();
                        if delimiter.is_empty() {
                            return Err("a here-document without a delimiter word".into());
                        }
                        pending.push((delimiter, strip));
                    }
                    (Frame::Plain { .. }, '\n') if !pending.is_empty() => {
                        // The bodies, line by line, up to each delimiter.
                        for (delimiter, strip) in pending.drain(..) {
                            loop {
                                let start = i;
                                while i < chars.len() && chars[i] != '\n' {
                                    i += 1;
                                }
                                let line: String = chars[start..i].iter().collect();
                                if line.contains(OPEN) {
                                    return Err(NESTED.into());
                                }
                                out.push_str(&line);
                                if i < chars.len() {
                                    out.push('\n');
                                    i += 1;
                                }
                                let bare = if strip {
                                    line.trim_start_matches('\t')
                                } else {
                                    &line
                                };
                                if bare == delimiter || i >= chars.len() {
                                    break;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// The `{{ … | safe }}` expressions of a command: values it inserts as
/// shell code, unquoted, which `plan` lists.
pub fn unquoted_insertions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let expr = &rest[start..start + len + 2];
        let filters = expr[2..expr.len() - 2].split('|').skip(1);
        if filters
            .map(str::trim)
            .any(|f| f == "safe" || f.starts_with("safe("))
        {
            out.push(expr.to_string());
        }
        rest = &rest[start + len + 2..];
    }
    out
}

/// The host's `env:` with each value rendered with `ctx`, for export in
/// its commands.
pub fn host_env(host: &Host, ctx: &Context) -> Result<Vec<(String, String)>, RenderError> {
    host.env
        .iter()
        .map(|(name, value)| {
            let what = format!("`env.{name}`");
            // Exported as one quoted word by the step's script.
            Ok((
                name.clone(),
                render_template(value, ctx, &what, &host.name)?,
            ))
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
    if let Some(start) = msg.find("Variable `secrets.") {
        let name = msg[start + 18..].split('`').next().unwrap_or("");
        return format!(
            "secret `{name}` is not in the stage's secrets file (it is read as `secrets.{name}`)"
        );
    }
    msg.replace('\n', " ")
}

/// Names of environment variables a text reads as `env.NAME`: their values
/// are secrets and are redacted from all output.
pub fn referenced_env(text: &str) -> BTreeSet<String> {
    referenced(text, "env.")
}

/// Names of the stage's secrets a text reads as `secrets.NAME`.
pub fn referenced_secrets(text: &str) -> BTreeSet<String> {
    referenced(text, "secrets.")
}

fn referenced(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before_ok = i == 0
            || !rest[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
        let tail = &rest[i + prefix.len()..];
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

    /// Each command rendered with hostile values, run by `sh`: it prints
    /// each value exactly and runs none of it, or is refused.
    #[test]
    fn values_are_literal_wherever_they_sit_in_a_command() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        let c = canary.display();
        let values = [
            format!("$(touch {c})"),
            format!("`touch {c}`"),
            format!("'; touch {c}; '"),
            format!("\"; touch {c}; \""),
            format!("a\ntouch {c}"),
            format!("\\\"$(touch {c})\\"),
            "$HOME ~ * ${x:-y} \\".to_string(),
            "plain-word_1.2:3".to_string(),
            String::new(),
        ];
        // (command, what it prints for a value `v`, or the refusal)
        let cases: [(&str, Result<&str, &str>); 14] = [
            ("printf '%s' {{ v }}", Ok("{v}")),
            ("printf '%s' \"{{ v }}\"", Ok("{v}")),
            ("printf '%s' '{{ v }}'", Ok("{v}")),
            ("printf '%s' \"<{{ v }}> it's\" ", Ok("<{v}> it's")),
            (
                "printf '%s' '<{{ v }}>' \"{{ v }}\"{{ v }}",
                Ok("<{v}>{v}{v}"),
            ),
            ("# it's a comment {{ v }}\nprintf '%s' {{ v }}", Ok("{v}")),
            ("x=$(echo \"(\"); printf '%s' {{ v }}\"$x\"", Ok("{v}(")),
            (
                "cat <<'EOF'\nit's \"$x\nEOF\nprintf '%s' {{ v }}",
                Ok("it's \"$x\n{v}"),
            ),
            ("printf '%s' \"$(echo {{ v }})\"", Err("inside `$( )`")),
            (
                "printf '%s' `echo {{ v }}`",
                Err("inside `$( )`, backticks"),
            ),
            ("printf '%s' \"`echo {{ v }}`\"", Err("backticks")),
            ("cat <<EOF\n{{ v }}\nEOF", Err("here-document")),
            ("printf '%s' ${x:-{{ v }}}", Err("`${ }`")),
            ("printf '%s' \\{{ v }}", Err("right after a `\\`")),
        ];
        for v in &values {
            let mut ctx = Context::new();
            ctx.insert("v", v);
            for (cmd, want) in &cases {
                let got = render(cmd, &ctx, "task `t`", "h");
                match (got, want) {
                    (Ok(script), Ok(want)) => {
                        let out = std::process::Command::new("sh")
                            .arg("-c")
                            .arg(&script)
                            .current_dir(dir.path())
                            .output()
                            .unwrap();
                        assert!(out.status.success(), "{cmd} with {v:?}: {script}");
                        assert_eq!(
                            String::from_utf8_lossy(&out.stdout),
                            want.replace("{v}", v),
                            "{cmd} with {v:?}: {script}"
                        );
                    }
                    (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{cmd}: {e}"),
                    (got, want) => panic!("{cmd} with {v:?}: {got:?}, want {want:?}"),
                }
                assert!(!canary.exists(), "{cmd} with {v:?} ran a payload");
            }
        }
        // A plain word stays as it is; `| safe` is shell code.
        let mut ctx = Context::new();
        ctx.insert("port", &8080);
        ctx.insert("host", "web-1.acme.internal");
        ctx.insert("flags", "-a -b");
        let got = render(
            "run {{ host }}:{{ port }} {{ flags | safe }} {{ flags }}",
            &ctx,
            "t",
            "h",
        );
        assert_eq!(got.unwrap(), "run web-1.acme.internal:8080 -a -b '-a -b'");
        assert_eq!(
            unquoted_insertions("a {{ x | safe }} {{y}} {{ z|upper|safe }} {{ safer }}"),
            vec!["{{ x | safe }}", "{{ z|upper|safe }}"]
        );
    }

    #[test]
    fn the_environment_is_reachable_only_through_the_names_read() {
        let mut ctx = Context::new();
        let env: BTreeMap<String, String> = [("A_KEY", "a-secret"), ("OTHER", "other-value")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ctx.insert("env", &env);
        ctx.insert(
            "secrets",
            &BTreeMap::from([("S".to_string(), "s-value".to_string())]),
        );
        let t = render_template("{{ env.A_KEY }} {{ secrets.S }}", &ctx, "t", "h").unwrap();
        assert_eq!(t, "a-secret s-value");
        for (text, says) in [
            (
                "{{ get_env(name=\"OTHER\") }}",
                "`get_env()` is not available",
            ),
            ("{{ __tera_context }}", "`__tera_context` is not available"),
            (
                "{% for k, v in env %}{{ v }}{% endfor %}{{ env.A_KEY }}",
                "",
            ),
            ("{% set n = \"OTH\" ~ \"ER\" %}{{ env[n] }}", "not found"),
            // A filter's error quotes the value it refused: masked.
            ("{{ env.A_KEY | int }}{{ env.A_KEY | round }}", "[redacted]"),
        ] {
            for command in [true, false] {
                match render_as(text, &ctx, "t", "h", command) {
                    Ok(out) => {
                        assert!(says.is_empty(), "{text}: {out}");
                        assert!(!out.contains("other-value"), "{text}: {out}");
                    }
                    Err(e) => {
                        assert!(e.to_string().contains(says), "{text}: {e}");
                        assert!(!e.to_string().contains("other-value"), "{e}");
                        assert!(!e.to_string().contains("a-secret"), "{e}");
                    }
                }
            }
        }
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
