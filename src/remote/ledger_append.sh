# shellcheck shell=sh
# Appends ledger lines, timestamped on the host. The arguments come in
# pairs: a line's text before its time value and after it. The lines go in
# one `printf` to a file opened for appending (O_APPEND), so concurrent
# writers never interleave within a line. A line cut short by a crash (a
# file not ending in a newline) is ended first, so that the next record
# starts a line of its own (racing writers may both add one; readers skip
# the empty line).
: "${deploy_to?}"
set -e
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
mkdir -p "$deploy_to/.shipit"
ledger="$deploy_to/.shipit/ledger.jsonl"
if [ -s "$ledger" ] && [ -n "$(tail -c 1 "$ledger")" ]; then printf '\n' >> "$ledger"; fi
n=$(($# / 2))
while [ "$n" -gt 0 ]; do set -- "$@" "$1$now$2"; shift 2; n=$((n - 1)); done
printf '%s\n' "$@" >> "$ledger"
