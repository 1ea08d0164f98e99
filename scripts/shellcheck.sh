#!/usr/bin/env bash
# Checks the project's shell with shellcheck: the scripts shipit runs on
# hosts (src/remote/*.sh, POSIX sh), the scripts here and .ci/run.
#
# When shellcheck is missing, as root it installs it with apt-get (Debian's
# `shellcheck` package); otherwise it says what to install.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v shellcheck >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/shellcheck.sh: shellcheck is not installed; install it" \
            "(sudo apt-get install shellcheck, or see https://www.shellcheck.net)" >&2
        exit 1
    fi
    echo "scripts/shellcheck.sh: installing shellcheck" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends shellcheck
fi

shellcheck --version | sed -n 2p
# Each remote script says `# shellcheck shell=sh`: hosts run them with sh.
shellcheck src/remote/*.sh
shellcheck scripts/*.sh .ci/run
# The load balancer recipes shipped for users.
shellcheck templates/load_balancer/*.sh
