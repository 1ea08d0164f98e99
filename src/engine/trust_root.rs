//! The trust root of a promotion gate: what a committer (who writes
//! deploy.yml and the release's files) and a deploy user (who writes every
//! ledger on its hosts) cannot change. Pure: the hosts' answers are passed
//! in.
//!
//! The protocol:
//!
//! 1. **which files**: the allowed signers file that `gate.allowed_signers`
//!    names, and the pinned gates ([`pinned_paths`]):
//!    `DIR/APP/STAGE.gate` beside that file, and `/etc/shipit/APP/STAGE.gate`
//!    always (so a deploy.yml without a gate, or without allowed signers,
//!    still meets the pinned one).
//! 2. **one read of its own** on every host of the target stage
//!    (`trust_root.sh`): no release file and no ledger line is in that
//!    answer, and file contents travel in hex, so no content can pass for
//!    the framing.
//! 3. **who may write them** ([`refusal`]): each file must be a plain file
//!    owned by root (uid 0) that neither its group nor others may write, in
//!    a directory owned by root that neither its group nor others may
//!    write; when the deploy user is not root it must also be unable to
//!    write either (`test -w`, which sees ACLs too). A deploy user that *is*
//!    root can write anything, so then only ownership and mode bits are
//!    checked: such a fleet has no trust root a deploy user cannot reach,
//!    and docs/security.md says so.
//! 4. **the same everywhere**: each file must be there on every host or
//!    on none, with the same bytes.
//! 5. **the effective gate** is the stricter of deploy.yml's gate and every
//!    pinned gate found ([`stricter`]).

use std::time::Duration;

use crate::config::Gate;

/// Where the pinned gates of every application live, whatever deploy.yml
/// says.
pub const PINNED_DIR: &str = "/etc/shipit";

/// What a host said about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRead {
    Missing,
    Symlink,
    /// There, but not a regular file, or not readable by the login.
    Unreadable,
    File(FileMeta),
}

/// A readable regular file: its owner and mode, its directory's, whether
/// the login may write either, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub uid: u32,
    pub mode: u32,
    pub writable: bool,
    pub dir_uid: u32,
    pub dir_mode: u32,
    pub dir_writable: bool,
    pub content: Vec<u8>,
}

/// One host's answer: the login's uid and each file asked for, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTrust {
    pub login_uid: u32,
    pub files: Vec<FileRead>,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads `trust_root.sh`'s answer for `n` files; `None` when it is not
/// complete or not in its shape.
pub fn parse(stdout: &str, n: usize) -> Option<HostTrust> {
    let mut login_uid = None;
    let mut files: Vec<Option<FileRead>> = vec![None; n];
    let mut metas: Vec<Option<FileMeta>> = vec![None; n];
    let mut ended = false;
    for line in stdout.lines() {
        if line == "end" {
            ended = true;
            continue;
        }
        if let Some(u) = line.strip_prefix("uid:") {
            login_uid = Some(u.trim().parse().ok()?);
            continue;
        }
        let rest = line.strip_prefix('f')?;
        let (i, what) = rest.split_once(':')?;
        let i: usize = i.parse().ok()?;
        let slot = i.checked_sub(1).filter(|s| *s < n)?;
        let mut parts = what.split(':');
        match parts.next()? {
            "missing" => files[slot] = Some(FileRead::Missing),
            "symlink" => files[slot] = Some(FileRead::Symlink),
            "unreadable" => files[slot] = Some(FileRead::Unreadable),
            "meta" => {
                let v: Vec<&str> = parts.collect();
                let [uid, mode, w, duid, dmode, dw] = v.as_slice() else {
                    return None;
                };
                metas[slot] = Some(FileMeta {
                    uid: uid.parse().ok()?,
                    mode: u32::from_str_radix(mode, 8).ok()?,
                    writable: *w == "yes",
                    dir_uid: duid.parse().ok()?,
                    dir_mode: u32::from_str_radix(dmode, 8).ok()?,
                    dir_writable: *dw == "yes",
                    content: Vec::new(),
                });
            }
            "hex" => {
                let mut m = metas[slot].take()?;
                m.content = unhex(parts.next().unwrap_or(""))?;
                files[slot] = Some(FileRead::File(m));
            }
            _ => return None,
        }
    }
    if !ended {
        return None;
    }
    Some(HostTrust {
        login_uid: login_uid?,
        files: files.into_iter().collect::<Option<Vec<_>>>()?,
    })
}

/// Group or others may write.
const SHARED_WRITE: u32 = 0o022;

/// Why `path` on `host` cannot be trusted, or `None` when it can (see the
/// module docs). A missing file is not refused here.
pub fn refusal(path: &str, host: &str, f: &FileRead, login_uid: u32) -> Option<String> {
    let m = match f {
        FileRead::Missing => return None,
        FileRead::Symlink => {
            return Some(format!(
                "`{path}` on `{host}` is a symbolic link: the trust root must be a plain file owned by root"
            ))
        }
        FileRead::Unreadable => {
            return Some(format!(
                "`{path}` on `{host}` is not a readable plain file"
            ))
        }
        FileRead::File(m) => m,
    };
    let dir = path
        .rsplit_once('/')
        .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
    if m.uid != 0 {
        return Some(format!(
            "`{path}` on `{host}` is owned by uid {}, not root: the trust root must be root-owned",
            m.uid
        ));
    }
    if m.mode & SHARED_WRITE != 0 {
        return Some(format!(
            "`{path}` on `{host}` may be written by its group or by everyone (mode {:o}): make it `chmod go-w`",
            m.mode
        ));
    }
    if m.writable && login_uid != 0 {
        return Some(format!(
            "`{path}` on `{host}` is writable by the deploy user (uid {login_uid})"
        ));
    }
    if m.dir_uid != 0 || m.dir_mode & SHARED_WRITE != 0 || (m.dir_writable && login_uid != 0) {
        return Some(format!(
            "the directory `{dir}` of `{path}` on `{host}` is not root-owned or may be written by others (uid {}, mode {:o}): the file could be replaced",
            m.dir_uid, m.dir_mode
        ));
    }
    None
}

/// The pinned gate files to read for `app`'s stage `stage`: beside the
/// allowed signers file when deploy.yml names one, and under
/// [`PINNED_DIR`] always; without duplicates.
pub fn pinned_paths(app: &str, stage: &str, allowed_signers: Option<&str>) -> Vec<String> {
    let name = format!("{app}/{stage}.gate");
    let mut out = Vec::new();
    if let Some(s) = allowed_signers {
        let dir = s.rsplit_once('/').map_or("", |(d, _)| d);
        out.push(format!("{dir}/{name}"));
    }
    let fixed = format!("{PINNED_DIR}/{name}");
    if !out.contains(&fixed) {
        out.push(fixed);
    }
    out
}

/// A pinned minimum gate: what it sets; the rest is left to deploy.yml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinnedGate {
    pub approvals: Option<u32>,
    pub soak: Option<Duration>,
    pub approvers: Option<Vec<String>>,
    pub self_approval: Option<bool>,
    pub approval_ttl: Option<Duration>,
    /// Approvals must be signed: deploy.yml must name `allowed_signers`.
    pub signed: bool,
}

/// Parses a pinned gate: `key: value` lines (`approvals`, `soak`,
/// `approvers` as a comma-separated list, `self_approval`, `approval_ttl`,
/// `signed`), `#` comments and blank lines. Anything else refuses: a
/// policy that cannot be read is not weakened by guessing.
pub fn parse_pinned(text: &str) -> Result<PinnedGate, String> {
    let mut g = PinnedGate::default();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}", n + 1);
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad("expected `key: value`"))?;
        let (k, v) = (k.trim(), v.trim());
        let dur = |v: &str| {
            crate::config::parse_duration(v)
                .ok_or_else(|| bad(&format!("`{k}` is not a duration: `{v}`")))
        };
        let boolean = |v: &str| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad(&format!("`{k}` must be true or false, not `{v}`"))),
        };
        match k {
            "approvals" => {
                g.approvals = Some(
                    v.parse()
                        .map_err(|_| bad(&format!("`approvals` is not a number: `{v}`")))?,
                )
            }
            "soak" => g.soak = Some(dur(v)?),
            "approval_ttl" => g.approval_ttl = Some(dur(v)?),
            "self_approval" => g.self_approval = Some(boolean(v)?),
            "signed" => g.signed = boolean(v)?,
            "approvers" => {
                let list: Vec<String> = v
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .split(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect();
                g.approvers = Some(list);
            }
            other => return Err(bad(&format!("unknown key `{other}`"))),
        }
    }
    Ok(g)
}

/// The gate when deploy.yml's says nothing more than a pinned gate.
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The stricter of deploy.yml's gate and a pinned one: more approvals,
/// longer soak, shorter approval TTL, self-approval only when both allow
/// it, approvers only those both allow (both lists non-empty: their
/// intersection, which may leave nobody).
pub fn stricter(yml: Option<&Gate>, p: &PinnedGate) -> Gate {
    let base = yml.cloned().unwrap_or(Gate {
        approvals: 0,
        soak: Duration::ZERO,
        approvers: Vec::new(),
        self_approval: false,
        approval_ttl: DEFAULT_TTL,
        allowed_signers: None,
    });
    let approvers = match &p.approvers {
        Some(pinned) if !pinned.is_empty() => {
            if base.approvers.is_empty() {
                pinned.clone()
            } else {
                base.approvers
                    .iter()
                    .filter(|a| pinned.contains(a))
                    .cloned()
                    .collect()
            }
        }
        _ => base.approvers.clone(),
    };
    Gate {
        approvals: base.approvals.max(p.approvals.unwrap_or(0)),
        soak: base.soak.max(p.soak.unwrap_or(Duration::ZERO)),
        approvers,
        self_approval: base.self_approval && p.self_approval.unwrap_or(true),
        approval_ttl: p
            .approval_ttl
            .map_or(base.approval_ttl, |t| t.min(base.approval_ttl)),
        allowed_signers: base.allowed_signers,
    }
}

/// What the trust root decides for a promotion into a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Trust {
    /// The effective gate (`None`: neither deploy.yml nor a pinned gate
    /// has one).
    pub gate: Option<Gate>,
    /// The allowed signers, the same on every host (`None`: approvals are
    /// not signed).
    pub signers: Option<String>,
    /// The pinned gates that apply.
    pub pinned: Vec<String>,
}

impl Trust {
    /// One sentence for the gate's `trust_root` rule.
    pub fn describe(&self) -> String {
        let signers = match (
            &self.signers,
            self.gate
                .as_ref()
                .and_then(|g| g.allowed_signers.as_deref()),
        ) {
            (Some(_), Some(p)) => {
                format!("allowed signers `{p}` root-owned and the same on every host")
            }
            _ => "approvals are not signed".to_string(),
        };
        if self.pinned.is_empty() {
            format!("{signers}; no pinned gate")
        } else {
            format!("{signers}; pinned gate {}", self.pinned.join(", "))
        }
    }
}

/// The files [`resolve`] needs read, in the order it expects them: the
/// allowed signers file (when deploy.yml names one), then the pinned
/// gates.
pub fn files(app: &str, stage: &str, yml: Option<&Gate>) -> Vec<String> {
    let signers = yml.and_then(|g| g.allowed_signers.as_deref());
    let mut out: Vec<String> = signers.map(str::to_string).into_iter().collect();
    out.extend(pinned_paths(app, stage, signers));
    out
}

/// Decides the trust root from every host's answer (`hosts`: name and
/// answer for the files of [`files`]). The error is a refusal sentence.
pub fn resolve(
    app: &str,
    stage: &str,
    yml: Option<&Gate>,
    hosts: &[(&str, HostTrust)],
) -> Result<Trust, String> {
    let paths = files(app, stage, yml);
    let signed = yml.and_then(|g| g.allowed_signers.as_deref()).is_some();
    let mut contents: Vec<Option<Vec<u8>>> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let mut seen: Option<(&str, Option<&Vec<u8>>)> = None;
        for (host, t) in hosts {
            let f = t
                .files
                .get(i)
                .ok_or_else(|| format!("`{host}` did not answer for `{path}`"))?;
            if let Some(why) = refusal(path, host, f, t.login_uid) {
                return Err(why);
            }
            let c = match f {
                FileRead::File(m) => Some(&m.content),
                _ => None,
            };
            if signed && i == 0 && c.is_none() {
                return Err(format!(
                    "`{stage}` verifies approvals against `{path}`, which is missing on `{host}`: install it there (root-owned, the same on every host)"
                ));
            }
            match seen {
                None => seen = Some((host, c)),
                Some((first, fc)) if fc != c => {
                    return Err(format!(
                        "`{path}` differs between the hosts of `{stage}` (`{first}` and `{host}`): make it the same everywhere"
                    ))
                }
                Some(_) => {}
            }
        }
        contents.push(seen.and_then(|(_, c)| c.cloned()));
    }
    let (signers, gates) = if signed {
        (contents.first().cloned().flatten(), &contents[1..])
    } else {
        (None, &contents[..])
    };
    let gate_paths = &paths[paths.len() - gates.len()..];
    let mut gate = yml.cloned();
    let mut pinned = Vec::new();
    for (path, c) in gate_paths.iter().zip(gates) {
        let Some(c) = c else { continue };
        let text = String::from_utf8_lossy(c);
        let p = parse_pinned(&text).map_err(|e| {
            format!(
                "the pinned gate `{path}` cannot be read ({e}): fix it on the hosts of `{stage}`"
            )
        })?;
        if p.signed && !signed {
            return Err(format!(
                "the pinned gate `{path}` requires signed approvals, and deploy.yml names no `gate.allowed_signers` for `{stage}`"
            ));
        }
        gate = Some(stricter(gate.as_ref(), &p));
        pinned.push(path.clone());
    }
    let signers = signers.map(|s| String::from_utf8_lossy(&s).into_owned());
    Ok(Trust {
        gate,
        signers,
        pinned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: u32, mode: u32, content: &str) -> FileRead {
        FileRead::File(FileMeta {
            uid,
            mode,
            writable: true,
            dir_uid: 0,
            dir_mode: 0o755,
            dir_writable: true,
            content: content.as_bytes().to_vec(),
        })
    }

    #[test]
    fn answers_parse_and_content_cannot_forge_the_framing() {
        // "f2:missing\n" in hex inside f1's content.
        let hex: String = "f2:missing\nend\n"
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        let out = format!("uid:0\nf1:meta:0:644:yes:0:755:yes\nf1:hex:{hex}\nf2:missing\nend\n");
        let t = parse(&out, 2).unwrap();
        assert_eq!(t.login_uid, 0);
        assert_eq!(t.files[0], meta(0, 0o644, "f2:missing\nend\n"));
        assert_eq!(t.files[1], FileRead::Missing);
        // Incomplete or foreign answers are not read.
        assert_eq!(parse("uid:0\nf1:missing\n", 1), None);
        assert_eq!(parse("uid:0\nend\n", 1), None);
        assert_eq!(parse("uid:0\n--- signers\nf1:missing\nend\n", 1), None);
    }

    #[test]
    fn who_may_write_the_trust_root() {
        let p = "/etc/shipit/allowed_signers";
        let ok = meta(0, 0o644, "x");
        let with = |f: &dyn Fn(&mut FileMeta)| {
            let FileRead::File(mut m) = ok.clone() else {
                unreachable!()
            };
            f(&mut m);
            FileRead::File(m)
        };
        let cases: Vec<(FileRead, u32, Option<&str>)> = vec![
            (ok.clone(), 0, None),
            (FileRead::Missing, 1000, None),
            (
                with(&|m| m.uid = 1000),
                0,
                Some("is owned by uid 1000, not root"),
            ),
            (
                with(&|m| m.mode = 0o664),
                0,
                Some("may be written by its group or by everyone (mode 664)"),
            ),
            (with(&|m| m.mode = 0o646), 0, Some("(mode 646)")),
            // Root writes everything: only owner and mode count for it.
            (ok.clone(), 0, None),
            (
                with(&|m| m.dir_writable = false),
                1000,
                Some("is writable by the deploy user (uid 1000)"),
            ),
            (
                with(&|m| m.writable = false),
                1000,
                Some("the directory `/etc/shipit`"),
            ),
            (
                with(&|m| {
                    m.writable = false;
                    m.dir_writable = false;
                }),
                1000,
                None,
            ),
            (
                with(&|m| m.dir_mode = 0o1777),
                0,
                Some("the file could be replaced"),
            ),
            (with(&|m| m.dir_uid = 5), 0, Some("is not root-owned")),
            (FileRead::Symlink, 0, Some("is a symbolic link")),
        ];
        for (f, uid, want) in cases {
            let got = refusal(p, "web-1", &f, uid);
            match (&got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!(g.contains(w), "{g}\nwanted: {w}"),
                _ => panic!("{f:?} as uid {uid}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn pinned_gates_sit_beside_the_signers_and_under_etc() {
        assert_eq!(
            pinned_paths("shop", "production", Some("/srv/trust/allowed_signers")),
            vec![
                "/srv/trust/shop/production.gate",
                "/etc/shipit/shop/production.gate"
            ]
        );
        assert_eq!(
            pinned_paths("shop", "production", Some("/etc/shipit/allowed_signers")),
            vec!["/etc/shipit/shop/production.gate"]
        );
        assert_eq!(
            pinned_paths("shop", "production", None),
            vec!["/etc/shipit/shop/production.gate"]
        );
    }

    #[test]
    fn pinned_gates_parse_or_refuse() {
        let g = parse_pinned(
            "# production\napprovals: 2\nsoak: 1h\napprovers: alice, bob\nself_approval: false\napproval_ttl: 4h\nsigned: true\n",
        )
        .unwrap();
        assert_eq!(
            g,
            PinnedGate {
                approvals: Some(2),
                soak: Some(Duration::from_secs(3600)),
                approvers: Some(vec!["alice".into(), "bob".into()]),
                self_approval: Some(false),
                approval_ttl: Some(Duration::from_secs(4 * 3600)),
                signed: true,
            }
        );
        assert_eq!(
            parse_pinned("approvers: [a, b]").unwrap().approvers,
            Some(vec!["a".into(), "b".into()])
        );
        for (text, want) in [
            ("approvals: two", "line 1: `approvals` is not a number"),
            ("\nsoak: soon", "line 2: `soak` is not a duration"),
            ("self_approval: yes", "must be true or false"),
            ("aprovals: 2", "unknown key `aprovals`"),
            ("approvals 2", "expected `key: value`"),
        ] {
            let e = parse_pinned(text).unwrap_err();
            assert!(e.contains(want), "{e}\nwanted: {want}");
        }
    }

    fn gate(approvals: u32, soak: u64, approvers: &[&str], self_approval: bool, ttl: u64) -> Gate {
        Gate {
            approvals,
            soak: Duration::from_secs(soak),
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            self_approval,
            approval_ttl: Duration::from_secs(ttl),
            allowed_signers: Some("/etc/shipit/allowed_signers".into()),
        }
    }

    #[test]
    fn the_effective_gate_is_the_stricter_of_both() {
        let pinned = PinnedGate {
            approvals: Some(2),
            soak: Some(Duration::from_secs(600)),
            approvers: Some(vec!["alice".into(), "bob".into()]),
            self_approval: Some(false),
            approval_ttl: Some(Duration::from_secs(3600)),
            signed: true,
        };
        // deploy.yml weakened every field: the pinned values stand.
        let weak = gate(0, 0, &["mallory", "bob"], true, 86400);
        let g = stricter(Some(&weak), &pinned);
        assert_eq!(g, gate(2, 600, &["bob"], false, 3600));
        // deploy.yml stricter than the pin: deploy.yml's values stand.
        let strong = gate(3, 7200, &[], false, 600);
        let g = stricter(Some(&strong), &pinned);
        assert_eq!(g, gate(3, 7200, &["alice", "bob"], false, 600));
        // No gate in deploy.yml: the pin is the gate.
        let g = stricter(
            None,
            &PinnedGate {
                approvals: Some(1),
                ..PinnedGate::default()
            },
        );
        assert_eq!(
            (g.approvals, g.self_approval, g.approval_ttl),
            (1, false, DEFAULT_TTL)
        );
        // An empty pin changes nothing.
        assert_eq!(stricter(Some(&weak), &PinnedGate::default()), weak);
    }

    fn host(files: Vec<FileRead>) -> HostTrust {
        HostTrust {
            login_uid: 0,
            files,
        }
    }

    #[test]
    fn the_trust_root_must_be_the_same_everywhere_and_pins_the_gate() {
        let yml = gate(0, 0, &[], true, 86400);
        let signers = meta(0, 0o644, "bob ssh-ed25519 AAAA\n");
        let pin = meta(0, 0o644, "approvals: 1\n");
        let paths = files("shop", "production", Some(&yml));
        assert_eq!(
            paths,
            vec![
                "/etc/shipit/allowed_signers",
                "/etc/shipit/shop/production.gate"
            ]
        );
        let same = vec![
            ("a", host(vec![signers.clone(), pin.clone()])),
            ("b", host(vec![signers.clone(), pin.clone()])),
        ];
        let t = resolve("shop", "production", Some(&yml), &same).unwrap();
        assert_eq!(t.signers.as_deref(), Some("bob ssh-ed25519 AAAA\n"));
        assert_eq!(t.gate.as_ref().unwrap().approvals, 1);
        assert_eq!(t.pinned, vec!["/etc/shipit/shop/production.gate"]);
        let other = meta(0, 0o644, "mallory ssh-ed25519 BBBB\n");
        let cases: Vec<(Vec<(&str, HostTrust)>, &str)> = vec![
            (
                vec![("a", host(vec![signers.clone(), pin.clone()])), ("b", host(vec![other, pin.clone()]))],
                "`/etc/shipit/allowed_signers` differs between the hosts of `production` (`a` and `b`)",
            ),
            (
                vec![("a", host(vec![signers.clone(), pin.clone()])), ("b", host(vec![signers.clone(), FileRead::Missing]))],
                "`/etc/shipit/shop/production.gate` differs between the hosts",
            ),
            (
                vec![("a", host(vec![FileRead::Missing, FileRead::Missing]))],
                "which is missing on `a`",
            ),
            (
                vec![("a", host(vec![signers.clone(), meta(0, 0o644, "approvals: many\n")]))],
                "the pinned gate `/etc/shipit/shop/production.gate` cannot be read",
            ),
            (
                vec![("a", host(vec![signers.clone(), meta(1000, 0o644, "approvals: 0\n")]))],
                "owned by uid 1000, not root",
            ),
        ];
        for (hosts, want) in cases {
            let e = resolve("shop", "production", Some(&yml), &hosts).unwrap_err();
            assert!(e.contains(want), "{e}\nwanted: {want}");
        }
        // Without allowed signers, a pinned gate that asks for signatures refuses.
        let unsigned = Gate {
            allowed_signers: None,
            ..yml.clone()
        };
        let e = resolve(
            "shop",
            "production",
            Some(&unsigned),
            &[("a", host(vec![meta(0, 0o644, "signed: true\n")]))],
        )
        .unwrap_err();
        assert!(e.contains("requires signed approvals"), "{e}");
    }
}
