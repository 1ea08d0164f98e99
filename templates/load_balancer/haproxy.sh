#!/bin/sh
# shipit load balancer recipe: HAProxy's runtime API.
#
#   haproxy.sh drain|ready BACKEND SERVER [SOCKET]
#
# `drain` stops HAProxy from sending new connections to SERVER of BACKEND
# and waits (up to $LB_DRAIN_TIMEOUT seconds, default 30) until the
# server's current sessions are down to 0; `ready` puts it back. SOCKET is
# HAProxy's admin socket (default /run/haproxy/admin.sock), declared in
# haproxy.cfg with
#
#   global
#     stats socket /run/haproxy/admin.sock mode 660 level admin
#
# It talks to the socket with socat, or with `nc -U` when socat is missing
# (Debian: apt-get install socat). In deploy.yml, with the server names of
# haproxy.cfg equal to shipit's host names:
#
#   load_balancer:
#     drain:   { local: true, run: "sh templates/load_balancer/haproxy.sh drain app {{ host }}" }
#     undrain: { local: true, run: "sh templates/load_balancer/haproxy.sh ready app {{ host }}" }
#     wait: 2s
#
# (`local: true` runs it on the machine running shipit, which then needs
# the socket: run shipit on the HAProxy machine, or expose the socket
# there. Without `local`, it runs on each host.)
set -eu

usage() {
    echo "usage: haproxy.sh drain|ready BACKEND SERVER [SOCKET]" >&2
    exit 2
}
[ "$#" -ge 3 ] || usage
action=$1
backend=$2
server=$3
socket=${4:-/run/haproxy/admin.sock}
case $action in
    drain | ready | maint) ;;
    *) usage ;;
esac

# Sends one command to the runtime API and prints HAProxy's answer.
api() {
    if command -v socat >/dev/null 2>&1; then
        printf '%s\n' "$1" | socat stdio "unix-connect:$socket"
    else
        printf '%s\n' "$1" | nc -U "$socket"
    fi
}

# `set server` answers nothing when it worked, and says why when not.
answer=$(api "set server $backend/$server state $action")
if [ -n "$(printf '%s' "$answer" | tr -d '[:space:]')" ]; then
    echo "haproxy: set server $backend/$server state $action: $answer" >&2
    exit 1
fi

if [ "$action" = drain ]; then
    # `show stat` is CSV: proxy name, server name, ..., current sessions
    # (the 5th field).
    limit=${LB_DRAIN_TIMEOUT:-30}
    start=$(date +%s)
    while :; do
        sessions=$(api "show stat" | awk -F, -v b="$backend" -v s="$server" '$1 == b && $2 == s { print $5 }')
        if [ -z "$sessions" ]; then
            echo "haproxy: no server $backend/$server in show stat" >&2
            exit 1
        fi
        [ "$sessions" -eq 0 ] && break
        if [ $(($(date +%s) - start)) -ge "$limit" ]; then
            echo "haproxy: $backend/$server still has $sessions sessions after ${limit}s; going on" >&2
            break
        fi
        sleep 0.2
    done
fi
