#!/usr/bin/env bash
# The project's test command: bash scripts/test.sh [cargo test args]
#
# The integration tests start real OpenSSH sshd hosts on loopback
# (tests/support/fleet.rs), so this first makes sure OpenSSH is installed:
# the server (/usr/sbin/sshd) and the client (ssh, ssh-keygen), and
# xmllint (libxml2-utils) for the JUnit report's schema check, and
# haproxy, socat and python3 for the load balancer test. As root it
# installs what is missing with apt-get; otherwise it says what to install.
# Then it runs `cargo test --locked` with the arguments given.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
if [ ! -x /usr/sbin/sshd ]; then
    missing+=(openssh-server)
fi
if ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then
    missing+=(openssh-client)
fi
# The tests build application repositories with git, and the hosts fetch
# with it.
if ! command -v git >/dev/null 2>&1; then
    missing+=(git)
fi
# tests/ci_output.rs gives shipit a terminal with `script` (util-linux;
# Debian ships it in bsdutils).
if ! command -v script >/dev/null 2>&1; then
    missing+=(bsdutils)
fi
# tests/ci_output.rs validates the JUnit report with xmllint against
# tests/fixtures/junit.xsd.
if ! command -v xmllint >/dev/null 2>&1; then
    missing+=(libxml2-utils)
fi

# tests/ssh_load_balancer.rs puts a real HAProxy in front of the hosts,
# drains them through its runtime API with socat, and the hosts serve
# HTTP with python3.
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    missing+=(haproxy)
fi
if ! command -v socat >/dev/null 2>&1; then
    missing+=(socat)
fi
if [ ! -x /usr/bin/python3 ]; then
    missing+=(python3)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/test.sh: the tests need ${missing[*]}; install it" \
            "(sudo apt-get install ${missing[*]}) or run this script as root" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test.sh: the tests need ${missing[*]} (OpenSSH), and there is" \
            "no apt-get here to install it; install it with this system's package manager" >&2
        exit 1
    fi
    echo "scripts/test.sh: installing ${missing[*]} (the tests start real sshd hosts)" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# sshd's privilege separation directory; the package only creates it at
# boot. The fleet creates it too, but only root can.
if [ "$(id -u)" -eq 0 ] && [ ! -d /run/sshd ]; then
    mkdir -p /run/sshd
    chmod 0755 /run/sshd
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo is not on PATH; install Rust (rustup) first" >&2
    exit 1
fi

exec cargo test --locked "$@"
