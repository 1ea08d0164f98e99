#!/usr/bin/env bash
# The project's test command: bash scripts/test.sh [cargo test args]
#
# The integration tests start real OpenSSH sshd hosts on loopback
# (tests/support/fleet.rs), so this first makes sure OpenSSH is installed:
# the server (/usr/sbin/sshd) and the client (ssh, ssh-keygen), and
# xmllint (libxml2-utils) for the JUnit report's schema check, and
# haproxy, socat and python3 for the load balancer test. As root it
# installs what is missing with apt-get; otherwise it says what to install.
# It installs the EC2 API emulator (moto) and the AWS CLI from PyPI into
# target/tools/aws. Then it runs `cargo test --locked` with the arguments given.
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

# tests/yaml_limits.rs measures the peak memory of shipit with
# /usr/bin/time.
if [ ! -x /usr/bin/time ]; then
    missing+=(time)
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

# tests/ssh_autoscale.rs lists EC2 instances from an EC2 API emulator
# (moto's server) with the AWS CLI, both from PyPI, in a venv of the
# project's own under target/tools (never the system's Python packages).
aws_tools="$PWD/target/tools/aws"
if [ ! -x "$aws_tools/bin/moto_server" ] || [ ! -x "$aws_tools/bin/aws" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1; then
        if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
            echo "scripts/test.sh: the tests need Python 3 with venv (sudo apt-get install python3-venv)" >&2
            exit 1
        fi
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv
    fi
    echo "scripts/test.sh: installing moto[server] and awscli into target/tools/aws (the EC2 API emulator)" >&2
    rm -rf "$aws_tools"
    python3 -m venv "$aws_tools"
    "$aws_tools/bin/pip" install --quiet --disable-pip-version-check \
        'moto[server]==5.2.1' 'awscli==1.45.11'
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo is not on PATH; install Rust (rustup) first" >&2
    exit 1
fi

exec cargo test --locked "$@"
