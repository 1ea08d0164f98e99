//! The shell scripts each step sends to a host. Pure functions: every value
//! from config or the run is quoted with [`crate::shell::quote`], and every
//! path is built from `deploy_to` plus a validated relative path.

use std::time::Duration;

use crate::ledger::{Entry, EventKind, LEDGER_PATH};
use crate::shell::{join, parent, quote};

use super::release::ReleaseInfo;

/// Exit status a lock script uses to say the lock is held by someone else.
pub const LOCKED_STATUS: i32 = 75;

/// Where the lock lives, relative to `deploy_to`.
pub const LOCK_DIR: &str = ".shipit/lock";

/// The smallest free space (KiB) `check` accepts on `deploy_to`'s file system.
pub const MIN_FREE_KB: u64 = 50 * 1024;

/// Paths on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    pub deploy_to: String,
}

impl HostPaths {
    pub fn new(deploy_to: &str) -> Self {
        HostPaths {
            deploy_to: deploy_to.trim_end_matches('/').to_string(),
        }
    }
    pub fn at(&self, rel: &str) -> String {
        join(&self.deploy_to, rel)
    }
    pub fn release(&self, id: &str) -> String {
        self.at(&format!("releases/{id}"))
    }
    /// Where release `id`'s archive waits to be unpacked.
    pub fn archive(&self, id: &str) -> String {
        self.at(&format!("releases/.{id}.tar"))
    }
    pub fn repo(&self) -> String {
        self.at("repo")
    }
}

fn script(lines: &[String]) -> String {
    let mut s = String::from("set -e\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Takes the lock: the holder's record is written into a fresh directory
/// that is then renamed to `.shipit/lock` (atomic, and refused when the
/// lock exists), so the lock never exists without its whole record. When
/// it is held, prints the holder's record to stderr and where `current`
/// points to stdout, and exits [`LOCKED_STATUS`]. On success prints the
/// names of existing releases (so the run can mint a later id) and where
/// `current` points.
pub fn lock(p: &HostPaths, holder_json: &str) -> String {
    let lock = p.at(LOCK_DIR);
    let shipit = p.at(".shipit");
    // `$$`: one per lock script; a loser removes its own.
    let tmp = format!("{}/lock.new.$$", quote(&shipit));
    let current = current_lines(p);
    script(&[
        format!("mkdir -p {}", quote(&shipit)),
        format!("rm -rf {tmp} && mkdir {tmp}"),
        format!("printf '%s\\n' {} > {tmp}/info", quote(holder_json)),
        format!(
            "if [ -e {l} ] || ! mv -T {tmp} {l} 2>/dev/null; then rm -rf {tmp}; echo 'shipit: deploy lock held' >&2; cat {l}/info >&2 2>/dev/null || true; {current}; exit {LOCKED_STATUS}; fi",
            l = quote(&lock)
        ),
        format!(
            "if [ -d {r} ]; then ls -1 {r} | sed 's/^/release:/'; fi",
            r = quote(&p.at("releases"))
        ),
        current,
    ])
}

/// Reads where `current` points, changing nothing: the lines of
/// [`current_lines`], for [`parse_lock_output`].
pub fn read_current(p: &HostPaths) -> String {
    script(&[current_lines(p)])
}

/// Prints `current:TARGET` and `current_commit:SHA` for what `current`
/// points at, when it does (see [`parse_lock_output`]).
fn current_lines(p: &HostPaths) -> String {
    format!(
        "if [ -L {c} ]; then printf 'current:%s\\n' \"$(readlink {c})\"; fi; if [ -f {r} ]; then printf 'current_commit:%s\\n' \"$(cat {r})\"; fi",
        c = quote(&p.at("current")),
        r = quote(&p.at("current/REVISION"))
    )
}

/// What a successful lock script reported about the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockReport {
    pub releases: Vec<String>,
    /// The release `current` pointed to (its dir name), if any.
    pub current: Option<String>,
    /// The commit of that release (its REVISION).
    pub current_commit: Option<String>,
}

pub fn parse_lock_output(stdout: &str) -> LockReport {
    let mut r = LockReport::default();
    for line in stdout.lines() {
        if let Some(x) = line.strip_prefix("release:") {
            r.releases.push(x.to_string());
        } else if let Some(x) = line.strip_prefix("current_commit:") {
            r.current_commit = Some(x.trim().to_string());
        } else if let Some(x) = line.strip_prefix("current:") {
            r.current = Some(x.rsplit('/').next().unwrap_or(x).to_string());
        }
    }
    r
}

/// Frees the lock only when it is still ours (its record carries `token`).
/// The lock is renamed away before it is removed, so it never exists
/// without its record.
pub fn unlock(p: &HostPaths, token: &str) -> String {
    let lock = p.at(LOCK_DIR);
    script(&[
        format!(
            "if grep -qF {t} {i} 2>/dev/null; then mv -T {l} {g} && rm -rf {g}; fi",
            t = quote(token),
            i = quote(&join(&lock, "info")),
            l = quote(&lock),
            g = format!("{}/lock.gone.$$", quote(&p.at(".shipit")))
        ),
        format!("rm -f {}/stop-*", quote(&p.at(".shipit"))),
    ])
}

/// What `check` verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec<'a> {
    pub needs_git: bool,
    /// Strategy copy checks the archive's digest on the host.
    pub needs_sha256sum: bool,
    /// Linked files that must already be in `shared/` (those not rendered
    /// from a template by this run).
    pub linked_files: Vec<&'a str>,
}

/// Preflight: dirs exist and are writable, tools present, linked files in
/// place, enough disk space. Reports every problem, then fails if any.
pub fn check(p: &HostPaths, spec: &CheckSpec<'_>) -> String {
    let mut l = vec![
        "fail=0".to_string(),
        format!(
            "mkdir -p {} {} {}",
            quote(&p.at("releases")),
            quote(&p.at("shared")),
            quote(&p.at(".shipit"))
        ),
        format!(
            "for d in {} {}; do if [ ! -w \"$d\" ]; then echo \"not writable: $d\" >&2; fail=1; fi; done",
            quote(&p.at("releases")),
            quote(&p.at("shared"))
        ),
    ];
    let mut tools = vec!["tar"];
    if spec.needs_git {
        tools.insert(0, "git");
    }
    if spec.needs_sha256sum {
        tools.push("sha256sum");
    }
    for t in tools {
        l.push(format!(
            "if ! command -v {t} >/dev/null 2>&1; then echo \"missing command: {t}\" >&2; fail=1; fi"
        ));
    }
    for f in &spec.linked_files {
        let path = p.at(&format!("shared/{f}"));
        l.push(format!(
            "if [ ! -e {q} ]; then echo {msg} >&2; fail=1; fi",
            q = quote(&path),
            msg = quote(&format!("missing linked file: {path}"))
        ));
    }
    l.push(format!(
        "free=$(df -Pk {} | awk 'NR==2 {{print $4}}')",
        quote(&p.deploy_to)
    ));
    l.push(format!(
        "if [ -n \"$free\" ] && [ \"$free\" -lt {MIN_FREE_KB} ]; then echo \"low disk space: ${{free}} KiB free under {}, need {MIN_FREE_KB}\" >&2; fail=1; fi",
        p.deploy_to.replace(['"', '$', '`', '\\'], "_")
    ));
    l.push("exit $fail".to_string());
    script(&l)
}

/// Strategy git: clone the mirror once, then fetch; then make sure the
/// commit is there.
pub fn fetch_git(p: &HostPaths, repository: &str, commit: &str) -> String {
    let repo = p.repo();
    let tmp = p.at("repo.tmp");
    script(&[
        format!(
            "if [ -d {r} ]; then git --git-dir={r} remote set-url origin {u} && git --git-dir={r} fetch --quiet --prune origin '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*'; else rm -rf {t} && git clone --quiet --mirror {u} {t} && mv {t} {r}; fi",
            r = quote(&repo),
            t = quote(&tmp),
            u = quote(repository)
        ),
        format!(
            "if ! git --git-dir={r} cat-file -e {c}; then echo {m} >&2; exit 1; fi",
            r = quote(&repo),
            c = quote(&format!("{commit}^{{commit}}")),
            m = quote(&format!("commit {commit} is not in {repository}"))
        ),
    ])
}

/// Strategy copy: receives the archive on stdin into
/// `releases/.ID.tar`, and keeps it only when its digest matches.
pub fn upload_artifact(p: &HostPaths, r: &ReleaseInfo) -> String {
    let tar = p.archive(&r.id);
    let part = format!("{tar}.part");
    let digest = r.digest.clone().unwrap_or_default();
    script(&[
        format!("mkdir -p {}", quote(&p.at("releases"))),
        format!("cat > {}", quote(&part)),
        format!("got=\"sha256:$(sha256sum {} | cut -d' ' -f1)\"", quote(&part)),
        format!(
            "if [ \"$got\" != {d} ]; then rm -f {part}; echo \"archive digest mismatch: expected \"{d}\", got $got\" >&2; exit 1; fi",
            d = quote(&digest),
            part = quote(&part)
        ),
        format!("mv -f {} {}", quote(&part), quote(&tar)),
    ])
}

/// Strategy copy: unpacks the uploaded archive into a new release dir,
/// writes REVISION and records `staged` (with the digest).
pub fn create_release_copy(p: &HostPaths, r: &ReleaseInfo, host: &str) -> String {
    create_release(p, r, host, None)
}

/// Ends a ledger line cut short by a crash (a file not ending in a
/// newline), so that the next record starts a line of its own: the cut
/// line alone is lost, not the next one with it. Racing writers may both
/// add one; readers skip the empty line.
fn ledger_line_guard(p: &HostPaths) -> String {
    format!(
        "if [ -s {l} ] && [ -n \"$(tail -c 1 {l})\" ]; then printf '\\n' >> {l}; fi",
        l = quote(&p.at(LEDGER_PATH))
    )
}

/// Appends ledger lines, timestamped on the host. The lines go in one
/// `printf` to a file opened for appending (O_APPEND), so concurrent
/// writers never interleave within a line.
pub fn ledger_append(p: &HostPaths, entries: &[Entry]) -> String {
    let mut l = vec![
        "now=$(date -u +%Y-%m-%dT%H:%M:%SZ)".to_string(),
        format!("mkdir -p {}", quote(&p.at(".shipit"))),
        ledger_line_guard(p),
    ];
    let mut args = String::new();
    for e in entries {
        let (a, b) = e.split_for_shell();
        args.push_str(&format!(" {}\"$now\"{}", quote(&a), quote(&b)));
    }
    l.push(format!(
        "printf '%s\\n'{args} >> {}",
        quote(&p.at(LEDGER_PATH))
    ));
    l.join("\n")
}

/// Appends one complete ledger line (built and timestamped by shipit).
pub fn ledger_append_raw(p: &HostPaths, line: &str) -> String {
    script(&[
        format!("mkdir -p {}", quote(&p.at(".shipit"))),
        ledger_line_guard(p),
        format!(
            "printf '%s\\n' {} >> {}",
            quote(line),
            quote(&p.at(LEDGER_PATH))
        ),
    ])
}

/// A ledger entry for this run on `host`.
pub fn entry(r: &ReleaseInfo, host: &str, event: EventKind) -> Entry {
    Entry {
        event,
        release: r.id.clone(),
        commit: r.commit.clone(),
        digest: r.digest.clone(),
        application: r.application.clone(),
        stage: r.stage.clone(),
        host: host.to_string(),
        user: r.user.clone(),
        build_url: r.build_url.clone(),
        detail: None,
        time: String::new(),
    }
}

/// Exports the commit from the mirror into a new release dir, writes
/// REVISION and records `staged`.
pub fn create_release_git(p: &HostPaths, r: &ReleaseInfo, host: &str) -> String {
    let export = format!(
        "git --git-dir={} archive --format=tar -o {} {}",
        quote(&p.repo()),
        quote(&p.archive(&r.id)),
        quote(&r.commit)
    );
    create_release(p, r, host, Some(export))
}

/// A new release dir filled from the release's archive (written first by
/// `export` when given, else already uploaded), then REVISION and `staged`.
fn create_release(p: &HostPaths, r: &ReleaseInfo, host: &str, export: Option<String>) -> String {
    let rel = p.release(&r.id);
    let tar = p.archive(&r.id);
    let mut lines = vec![
        format!(
            "if [ -e {rel} ]; then echo {m} >&2; exit 1; fi",
            rel = quote(&rel),
            m = quote(&format!("release dir {rel} already exists"))
        ),
        format!("mkdir -p {}", quote(&rel)),
    ];
    lines.extend(export);
    lines.extend([
        format!(
            "tar -x -f {t} -C {rel} && rm -f {t}",
            t = quote(&tar),
            rel = quote(&rel)
        ),
        format!(
            "printf '%s\\n' {} > {}",
            quote(&r.commit),
            quote(&join(&rel, "REVISION"))
        ),
        ledger_append(p, &[entry(r, host, EventKind::Staged)]),
    ]);
    script(&lines)
}

/// Symlinks linked dirs and files from `shared/` into the release, creating
/// shared dirs that are missing. A linked path whose parent inside the
/// release is a symlink leading out of `deploy_to` (a repository can
/// commit `tmp -> /var`) is refused: the link, and the `rm -rf` before it,
/// would land outside.
pub fn link_shared(p: &HostPaths, release_id: &str, dirs: &[&str], files: &[&str]) -> String {
    let rel = p.release(release_id);
    let mut l = Vec::new();
    let escapes = |path: &str| -> Vec<String> {
        let mut checks = Vec::new();
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            checks.push(format!(
                "if [ -L {q} ]; then r=$(cd {q} 2>/dev/null && pwd -P) || r=; case \"$r/\" in \"$dt\"/*) ;; *) echo {m} >&2; exit 1;; esac; fi",
                q = quote(&join(&rel, &prefix)),
                m = quote(&format!(
                    "linked path `{path}` goes through `{prefix}`, a symlink in the release that leads out of {}; refusing to link there",
                    p.deploy_to
                ))
            ));
        }
        checks
    };
    let mut guarded = |path: &str, line: String| {
        let checks = escapes(path);
        if !checks.is_empty() && !l.iter().any(|x: &String| x.starts_with("dt=")) {
            l.push(format!("dt=$(cd {} && pwd -P)", quote(&p.deploy_to)));
        }
        l.extend(checks);
        l.push(line);
    };
    for d in dirs {
        let target = p.at(&format!("shared/{d}"));
        let link = join(&rel, d);
        guarded(
            d,
            format!(
                "mkdir -p {s} {lp} && rm -rf {k} && ln -s {s} {k}",
                s = quote(&target),
                lp = quote(parent(&link)),
                k = quote(&link)
            ),
        );
    }
    for f in files {
        let target = p.at(&format!("shared/{f}"));
        let link = join(&rel, f);
        guarded(
            f,
            format!(
                "mkdir -p {lp} && rm -rf {k} && ln -s {s} {k}",
                s = quote(&target),
                lp = quote(parent(&link)),
                k = quote(&link)
            ),
        );
    }
    if l.is_empty() {
        l.push("true".to_string());
    }
    script(&l)
}

/// Writes stdin to `dest` with `mode`, atomically (temp file + rename).
pub fn upload(dest: &str, mode: u32, tag: &str) -> String {
    let tmp = format!("{dest}.shipit-{tag}");
    script(&[
        format!("mkdir -p {}", quote(parent(dest))),
        format!("cat > {}", quote(&tmp)),
        format!("chmod {:o} {}", mode, quote(&tmp)),
        format!("mv -f {} {}", quote(&tmp), quote(dest)),
    ])
}

/// The environment every task and hook sees.
fn task_env(p: &HostPaths, r: &ReleaseInfo) -> String {
    format!(
        "export SHIPIT_RELEASE={} SHIPIT_COMMIT={} SHIPIT_STAGE={} SHIPIT_RELEASE_PATH={} SHIPIT_DEPLOY_TO={}",
        quote(&r.id),
        quote(&r.commit),
        quote(&r.stage),
        quote(&p.release(&r.id)),
        quote(&p.deploy_to)
    )
}

fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

/// Runs a user command in `dir`, retrying `retries` times `interval` apart.
/// `run` is the user's shell command (rendered); it is the one thing here
/// that is meant to be shell.
pub fn task(
    p: &HostPaths,
    r: &ReleaseInfo,
    dir: &str,
    run: &str,
    retries: u32,
    interval: Duration,
) -> String {
    let body = format!("( cd {} && {}\n)", quote(dir), run);
    // `set -e`: whatever follows (a ledger line) must not hide a failure.
    if retries == 0 {
        return format!("set -e\n{}\n{}\n", task_env(p, r), body);
    }
    format!(
        "set -e\n{env}\nn=0\nuntil {body}; do\n  n=$((n+1))\n  if [ \"$n\" -gt {retries} ]; then echo \"failed after $n attempts\" >&2; exit 1; fi\n  sleep {iv}\ndone\n",
        env = task_env(p, r),
        iv = secs(interval)
    )
}

/// Smoke test: the task's command with retries, then records `verified`.
pub fn smoke_test(
    p: &HostPaths,
    r: &ReleaseInfo,
    host: &str,
    run: &str,
    retries: u32,
    interval: Duration,
) -> String {
    format!(
        "{}{}\n",
        task(p, r, &p.at("current"), run, retries, interval),
        ledger_append(p, &[entry(r, host, EventKind::Verified)])
    )
}

/// Switches `current` atomically (temp link + rename) and records
/// `published`.
pub fn publish(p: &HostPaths, r: &ReleaseInfo, host: &str) -> String {
    let tmp = p.at(&format!(".current.{}", r.id));
    script(&[
        format!(
            "if [ ! -d {} ]; then echo {} >&2; exit 1; fi",
            quote(&p.release(&r.id)),
            quote(&format!("release {} is not staged", r.id))
        ),
        format!(
            "ln -sfn {} {}",
            quote(&format!("releases/{}", r.id)),
            quote(&tmp)
        ),
        format!("mv -fT {} {}", quote(&tmp), quote(&p.at("current"))),
        ledger_append(p, &[entry(r, host, EventKind::Published)]),
    ])
}

/// Appends the Capistrano-style line to `revisions.log`.
pub fn record(p: &HostPaths, r: &ReleaseInfo) -> String {
    let line = format!(
        "Branch {} (at {}) deployed as release {} by {}",
        r.reference, r.commit, r.id, r.user
    );
    script(&[format!(
        "printf '%s\\n' {} >> {}",
        quote(&line),
        quote(&p.at("revisions.log"))
    )])
}

/// Removes old releases. Only good releases count towards `keep` (the
/// ledger's last word on them is `verified` or `published`; a release the
/// ledger does not know, say from before shipit, counts as good). Never
/// removes `current`, this run's release, or the rollback target (the newest
/// good release older than `current`); releases whose last word is
/// `failed`, `rolled_back` or only `staged` are removed unless they are one
/// of those. Prints `removed ID` for each.
pub fn cleanup(p: &HostPaths, keep: u32, release_id: &str) -> String {
    let releases = p.at("releases");
    // The ledger is written by shipit with `event` then `release` first, so
    // a sed pattern reads it reliably without a JSON parser on the host.
    let awk = r#"
$0 == "--" { listing = 1; next }
!listing { status[$1] = $2; next }
{
  r = $0
  s = (r in status) ? status[r] : "unknown"
  good = (s == "verified" || s == "published" || s == "unknown")
  older = (cur != "" && r < cur)
  if (r == cur || r == this) { if (good) n++; print "keep " r; next }
  if (good && older && !target) { target = 1; n++; print "keep " r; next }
  if (good && n < keep) { n++; print "keep " r; next }
  print "remove " r
}"#;
    script(&[
        format!("cd {}", quote(&releases)),
        format!(
            "cur=$(readlink {} 2>/dev/null | sed 's#.*/##')",
            quote(&p.at("current"))
        ),
        format!(
            r#"{{ sed -n 's/^{{"event":"\([a-z_]*\)","release":"\([0-9TZ]*\)".*/\2 \1/p' {} 2>/dev/null || true; echo --; ls -1 | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z$' | sort -r || true; }} > .cleanup.$$"#,
            quote(&p.at(LEDGER_PATH))
        ),
        format!(
            r#"awk -v keep={keep} -v cur="$cur" -v this={} {} .cleanup.$$ > .cleanup-plan.$$"#,
            quote(release_id),
            quote(awk)
        ),
        "rm -f .cleanup.$$".to_string(),
        r#"while read -r verb r; do if [ "$verb" = remove ]; then rm -rf -- "$r" && echo "removed $r"; fi; done < .cleanup-plan.$$"#.to_string(),
        "rm -f .cleanup-plan.$$".to_string(),
    ])
}

/// Undo of a staging phase that did not complete: remove the staged release
/// dir and record `failed`.
pub fn discard_staged(p: &HostPaths, r: &ReleaseInfo, host: &str, why: &str) -> String {
    let mut e = entry(r, host, EventKind::Failed);
    e.detail = Some(why.to_string());
    script(&[
        // Never the release `current` points at, whatever happened.
        format!(
            "if [ \"$(readlink {} 2>/dev/null)\" != {} ]; then rm -rf {}; fi",
            quote(&p.at("current")),
            quote(&format!("releases/{}", r.id)),
            quote(&p.release(&r.id))
        ),
        format!(
            "rm -f {} {}",
            quote(&p.archive(&r.id)),
            quote(&format!("{}.part", p.archive(&r.id)))
        ),
        ledger_append(p, &[e]),
    ])
}

/// Undo of a publish: points `current` back at `previous` (or removes it
/// when there was none) and records `failed` for this release.
pub fn switch_back(p: &HostPaths, r: &ReleaseInfo, host: &str, previous: Option<&str>) -> String {
    let tmp = p.at(&format!(".current.{}", r.id));
    let mut e = entry(r, host, EventKind::Failed);
    e.detail = Some(match previous {
        Some(prev) => format!("switched back to {prev}"),
        None => "switched back: no previous release".to_string(),
    });
    let switch = match previous {
        Some(prev) => format!(
            "ln -sfn {} {t} && mv -fT {t} {c}",
            quote(&format!("releases/{prev}")),
            t = quote(&tmp),
            c = quote(&p.at("current"))
        ),
        None => format!("rm -f {}", quote(&p.at("current"))),
    };
    script(&[switch, ledger_append(p, &[e])])
}

/// The stop flag of a run on a host: when it exists, the run's chained
/// scripts start no further step (an interrupt).
pub fn stop_flag(p: &HostPaths, release_id: &str) -> String {
    p.at(&format!(".shipit/stop-{release_id}"))
}

/// A rendered `restart` or `smoke_test` command with its retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub run: String,
    pub retries: u32,
    pub interval: Duration,
}

/// Undo of a publish on one host: `current` back to `previous` (recording
/// `failed` for this run's release), then restart and smoke-test the
/// previous release and record it `published` and `verified` again, so the
/// ledger says which release is live and good. Fails if any of it fails.
pub fn undo_publish(
    p: &HostPaths,
    r: &ReleaseInfo,
    host: &str,
    previous: Option<&ReleaseInfo>,
    restart: Option<&HookCommand>,
    smoke: Option<&HookCommand>,
) -> String {
    let mut s = switch_back(p, r, host, previous.map(|x| x.id.as_str()));
    let Some(prev) = previous else {
        return s;
    };
    s.push_str(&ledger_append(
        p,
        &[entry(prev, host, EventKind::Published)],
    ));
    s.push('\n');
    if let Some(h) = restart {
        s.push_str(&format!(
            "if ! (\n{}); then echo 'restart of the previous release failed' >&2; exit 1; fi\n",
            task(p, prev, &p.at("current"), &h.run, h.retries, h.interval)
        ));
    }
    if let Some(h) = smoke {
        s.push_str(&format!(
            "if ! (\n{}); then echo 'smoke test of the previous release failed' >&2; exit 1; fi\n",
            task(p, prev, &p.at("current"), &h.run, h.retries, h.interval)
        ));
        s.push_str(&ledger_append(p, &[entry(prev, host, EventKind::Verified)]));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel() -> ReleaseInfo {
        ReleaseInfo {
            id: "20261124T190102Z".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            reference: "main".into(),
            user: "alice".into(),
            application: "shop".into(),
            stage: "staging".into(),
            build_url: None,
            digest: None,
        }
    }

    #[test]
    fn paths_are_quoted_even_when_hostile() {
        let p = HostPaths::new("/srv/my app/$(touch x)");
        let s = link_shared(&p, "20261124T190102Z", &["log"], &[".env"]);
        assert!(s.contains("'/srv/my app/$(touch x)/shared/log'"), "{s}");
        assert!(!s.contains(" /srv/my app"), "{s}");
    }

    #[test]
    fn publish_switches_with_a_temp_link_and_rename() {
        let p = HostPaths::new("/srv/shop");
        let s = publish(&p, &rel(), "web-1");
        assert!(
            s.contains("ln -sfn 'releases/20261124T190102Z' '/srv/shop/.current.20261124T190102Z'")
        );
        assert!(s.contains("mv -fT '/srv/shop/.current.20261124T190102Z' '/srv/shop/current'"));
        assert!(s.contains("\"event\":\"published\""));
    }

    #[test]
    fn lock_renames_a_prepared_dir_and_uses_a_distinct_status() {
        let s = lock(&HostPaths::new("/srv/shop"), "{\"user\":\"alice\"}");
        assert!(s.contains("mv -T '/srv/shop/.shipit'/lock.new.$$ '/srv/shop/.shipit/lock'"));
        assert!(s.contains("exit 75"));
    }

    #[tokio::test]
    async fn a_failing_smoke_test_fails_its_script_and_records_nothing() {
        use crate::transport::{local::LocalTransport, Transport};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("releases/20261124T190102Z")).unwrap();
        std::os::unix::fs::symlink("releases/20261124T190102Z", d.join("current")).unwrap();
        let p = HostPaths::new(d.to_str().unwrap());
        let t = LocalTransport::new("localhost");
        for retries in [0, 1] {
            let s = smoke_test(&p, &rel(), "h", "false", retries, Duration::from_millis(10));
            let out = t.run(&s, None, Duration::from_secs(10)).await.unwrap();
            assert_ne!(out.status, Some(0), "retries {retries}");
        }
        assert!(!d.join(".shipit/ledger.jsonl").exists());
        let s = smoke_test(&p, &rel(), "h", "true", 0, Duration::from_millis(10));
        assert!(t
            .run(&s, None, Duration::from_secs(10))
            .await
            .unwrap()
            .success());
        assert!(d.join(".shipit/ledger.jsonl").exists());
    }

    #[test]
    fn task_retries_only_when_asked() {
        let p = HostPaths::new("/srv/shop");
        let once = task(
            &p,
            &rel(),
            "/srv/shop/current",
            "true",
            0,
            Duration::from_secs(1),
        );
        assert!(!once.contains("until"));
        let retried = task(
            &p,
            &rel(),
            "/srv/shop/current",
            "true",
            3,
            Duration::from_millis(1500),
        );
        assert!(retried.contains("-gt 3"));
        assert!(retried.contains("sleep 1.500"));
    }

    #[test]
    fn record_uses_capistrano_wording() {
        let s = record(&HostPaths::new("/srv/shop"), &rel());
        assert!(s.contains("Branch main (at 0123456789abcdef0123456789abcdef01234567) deployed as release 20261124T190102Z by alice"));
    }

    #[tokio::test]
    async fn cleanup_counts_good_releases_and_keeps_the_rollback_target() {
        use crate::transport::{local::LocalTransport, Transport};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ids = [
            "20260101T000001Z", // verified, old
            "20260101T000002Z", // verified: the rollback target
            "20260101T000003Z", // failed
            "20260101T000004Z", // rolled back
            "20260101T000005Z", // current, verified
            "20260101T000006Z", // staged only (a crashed run)
            "20260101T000007Z", // failed
        ];
        for id in ids {
            std::fs::create_dir_all(d.join("releases").join(id)).unwrap();
        }
        std::os::unix::fs::symlink("releases/20260101T000005Z", d.join("current")).unwrap();
        std::fs::create_dir_all(d.join(".shipit")).unwrap();
        let mut ledger = String::new();
        let mut line = |id: &str, ev: &str| {
            ledger.push_str(&format!(
                "{{\"event\":\"{ev}\",\"release\":\"{id}\",\"commit\":\"c\",\"application\":\"a\",\"stage\":\"s\",\"host\":\"h\",\"user\":\"u\",\"time\":\"t\"}}\n"
            ))
        };
        for (id, evs) in [
            (ids[0], &["staged", "published", "verified"][..]),
            (ids[1], &["staged", "published", "verified"][..]),
            (ids[2], &["staged", "failed"][..]),
            (
                ids[3],
                &["staged", "published", "verified", "rolled_back"][..],
            ),
            (ids[4], &["staged", "published", "verified"][..]),
            (ids[5], &["staged"][..]),
            (ids[6], &["staged", "published", "failed"][..]),
        ] {
            for ev in evs {
                line(id, ev);
            }
        }
        std::fs::write(d.join(".shipit/ledger.jsonl"), ledger).unwrap();
        let p = HostPaths::new(d.to_str().unwrap());
        let t = LocalTransport::new("localhost");
        // keep 1: current alone would satisfy it, but the rollback target stays.
        let out = t
            .run(&cleanup(&p, 1, ids[4]), None, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(out.success(), "{}", out.stderr_str());
        let mut left: Vec<String> = std::fs::read_dir(d.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![ids[1].to_string(), ids[4].to_string()]);
    }

    #[tokio::test]
    async fn scripts_run_for_real_in_a_temp_dir() {
        use crate::transport::{local::LocalTransport, Transport};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app dir");
        let p = HostPaths::new(d.to_str().unwrap());
        let t = LocalTransport::new("localhost");
        let run = |s: String| {
            let t = t.clone();
            async move { t.run(&s, None, Duration::from_secs(20)).await.unwrap() }
        };
        let out = run(lock(&p, "{\"token\":\"T1\"}")).await;
        assert!(out.success(), "{}", out.stderr_str());
        let again = run(lock(&p, "{\"token\":\"T2\"}")).await;
        assert_eq!(again.status, Some(LOCKED_STATUS));
        assert!(again.stderr_str().contains("T1"));
        // Someone else's token does not free it.
        run(unlock(&p, "T2")).await;
        assert!(d.join(".shipit/lock").exists());
        run(unlock(&p, "T1")).await;
        assert!(!d.join(".shipit/lock").exists());
    }
}
