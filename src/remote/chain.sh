# shellcheck shell=sh
# Several steps of one host as one script, fed to `sh -s` on stdin (see
# src/plan/chain.rs for the frames it prints). The arguments come in fives,
# one step each: its id, its time limit in seconds, `yes` when it reads
# the next argument on stdin (else `no`), that input, and its script. Each
# step runs as its own `sh -c` with stdin from a file or /dev/null, its
# stdout and stderr captured to files, under `timeout` when the host has
# it. When the file `stop` exists (and `stop` is not empty), no further
# step starts and the script exits `stopped_status`. After a failed step
# the script stops (exit 0: the frames tell).
: "${stop?}" "${stopped_status?}"
t=$(mktemp -d "${TMPDIR:-/tmp}/shipit.XXXXXX") || { echo 'shipit: cannot create a temporary directory on the host' >&2; exit 97; }
trap 'rm -rf "$t"' EXIT
# A connection that dies (HUP) or a kill of the group (TERM) removes it too.
trap 'exit 129' HUP
trap 'exit 143' TERM
if command -v timeout >/dev/null 2>&1; then to='timeout -k 5'; else to=''; fi
while [ "$#" -ge 5 ]; do
  id=$1
  limit=$2
  has_input=$3
  input=$4
  step=$5
  shift 5
  if [ -n "$stop" ] && [ -e "$stop" ]; then exit "$stopped_status"; fi
  printf '\036S %s\n' "$id"
  if [ "$has_input" = yes ]; then printf '%s' "$input" > "$t/i"; from="$t/i"; else from=/dev/null; fi
  # `$to` is a command with its options, or nothing: split on purpose.
  # shellcheck disable=SC2086
  $to${to:+ $limit} sh -c "$step" <"$from" >"$t/o" 2>"$t/e"
  rc=$?
  # Most steps print nothing: `[ -s ]` is a builtin, so they cost no `wc`
  # or `cat` process (hundreds of hosts share the host CPU).
  if [ -s "$t/o" ]; then ol=$(wc -c <"$t/o"); else ol=0; fi
  if [ -s "$t/e" ]; then el=$(wc -c <"$t/e"); else el=0; fi
  printf '\036E %s %s %s %s\n' "$id" "$rc" "$ol" "$el"
  if [ "$ol" -gt 0 ]; then cat "$t/o"; fi
  if [ "$el" -gt 0 ]; then cat "$t/e"; fi
  [ "$rc" -eq 0 ] || exit 0
done
