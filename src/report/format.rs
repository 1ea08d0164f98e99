//! Picking the output format.

/// What `--format` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Requested {
    /// human on a terminal; plain when stdout is not one, in CI, or with
    /// `TERM=dumb`.
    Auto,
    /// Progress with a line per host (indicatif) and a summary table.
    Human,
    /// One line per step per host, for logs.
    Plain,
    /// One JSON object per event per line, for machines
    /// (docs/json-events.md).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Plain,
    Json,
}

/// What the reporter needs to know of the world; gathered once in `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct World {
    pub stdout_is_terminal: bool,
    /// `CI`, `JENKINS_URL`, `BUILD_ID` or `HUDSON_URL` is set.
    pub ci: bool,
    /// `TERM=dumb`.
    pub dumb_terminal: bool,
    /// `NO_COLOR` is set (to anything non-empty).
    pub no_color: bool,
}

impl World {
    /// Reads the world from an environment lookup and a terminal check.
    pub fn from_env(get: impl Fn(&str) -> Option<String>, stdout_is_terminal: bool) -> World {
        let set = |k: &str| get(k).is_some_and(|v| !v.is_empty());
        World {
            stdout_is_terminal,
            ci: ["CI", "JENKINS_URL", "BUILD_ID", "HUDSON_URL"]
                .iter()
                .any(|k| set(k)),
            dumb_terminal: get("TERM").as_deref() == Some("dumb"),
            no_color: set("NO_COLOR"),
        }
    }
}

pub fn choose(requested: Requested, world: World) -> Format {
    match requested {
        Requested::Human => Format::Human,
        Requested::Plain => Format::Plain,
        Requested::Json => Format::Json,
        Requested::Auto => {
            if world.stdout_is_terminal && !world.ci && !world.dumb_terminal {
                Format::Human
            } else {
                Format::Plain
            }
        }
    }
}

/// Whether output may carry colour and other ANSI styling: only human
/// output does, and not with `NO_COLOR` set.
pub fn color(format: Format, world: World) -> bool {
    format == Format::Human && !world.no_color
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(pairs: &[(&str, &str)], tty: bool) -> World {
        World::from_env(
            |k| {
                pairs
                    .iter()
                    .find(|(a, _)| *a == k)
                    .map(|(_, v)| v.to_string())
            },
            tty,
        )
    }

    #[test]
    fn auto_picks_by_terminal_and_ci() {
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, Format);
        let cases: &[Case] = &[
            (&[], true, Format::Human),
            (&[], false, Format::Plain),
            (&[("CI", "true")], true, Format::Plain),
            (&[("JENKINS_URL", "http://ci/")], true, Format::Plain),
            (&[("BUILD_ID", "42")], true, Format::Plain),
            (&[("HUDSON_URL", "http://ci/")], true, Format::Plain),
            (&[("TERM", "dumb")], true, Format::Plain),
            (&[("TERM", "xterm")], true, Format::Human),
            (&[("CI", "")], true, Format::Human),
        ];
        for (env, tty, want) in cases {
            assert_eq!(
                choose(Requested::Auto, world(env, *tty)),
                *want,
                "{env:?} tty={tty}"
            );
        }
    }

    #[test]
    fn explicit_choice_wins() {
        let w = world(&[("CI", "1")], false);
        assert_eq!(choose(Requested::Human, w), Format::Human);
        assert_eq!(choose(Requested::Plain, world(&[], true)), Format::Plain);
        assert_eq!(choose(Requested::Json, world(&[], true)), Format::Json);
        assert_eq!(choose(Requested::Json, w), Format::Json);
    }

    #[test]
    fn auto_never_picks_json() {
        for tty in [true, false] {
            for env in [&[][..], &[("CI", "1")][..], &[("TERM", "dumb")][..]] {
                assert_ne!(choose(Requested::Auto, world(env, tty)), Format::Json);
            }
        }
    }

    #[test]
    fn colour_only_for_human_without_no_color() {
        type Case<'a> = (Format, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            (Format::Human, &[], true),
            (Format::Human, &[("NO_COLOR", "1")], false),
            (Format::Human, &[("NO_COLOR", "")], true),
            (Format::Plain, &[], false),
            (Format::Json, &[], false),
        ];
        for (format, env, want) in cases {
            assert_eq!(
                color(*format, world(env, true)),
                *want,
                "{format:?} {env:?}"
            );
        }
    }

    #[test]
    fn no_color_is_read() {
        assert!(world(&[("NO_COLOR", "1")], true).no_color);
        assert!(!world(&[], true).no_color);
    }
}
