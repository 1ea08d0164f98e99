# shellcheck shell=sh
# Takes the deploy lock of `deploy_to`: the holder's record is written into
# a fresh directory that is then renamed to `.shipit/lock` (atomic, and
# refused when the lock exists), so the lock never exists without its whole
# record. When it is held: prints the holder's record to stderr and where
# `current` points to stdout, and exits `locked_status`. Otherwise prints
# the ledger's lines (`ledger:LINE`), the names of existing releases
# (`release:ID`) and where `current` points (`current:`,
# `current_commit:`): the run mints a later release id and decides what to
# clean up from them.
: "${deploy_to?}" "${current?}" "${holder?}" "${locked_status?}"
set -e
shipit="$deploy_to/.shipit"
lock="$shipit/lock"
# One per lock script; a loser removes its own.
tmp="$shipit/lock.new.$$"
print_current() {
  if [ -L "$deploy_to/$current" ]; then printf 'current:%s\n' "$(readlink "$deploy_to/$current")"; fi
  if [ -f "$deploy_to/$current/REVISION" ]; then printf 'current_commit:%s\n' "$(cat "$deploy_to/$current/REVISION")"; fi
}
mkdir -p "$shipit"
rm -rf "$tmp" && mkdir "$tmp"
printf '%s\n' "$holder" > "$tmp/info"
if [ -e "$lock" ] || ! mv -T "$tmp" "$lock" 2>/dev/null; then
  rm -rf "$tmp"
  echo 'shipit: deploy lock held' >&2
  cat "$lock/info" >&2 2>/dev/null || true
  print_current
  exit "$locked_status"
fi
# The ledger's lines as they are (the run parses them and skips a line it
# cannot read), first: a step's output tail, which `-v` shows, stays the
# releases and `current`.
if [ -f "$shipit/ledger.jsonl" ]; then sed 's/^/ledger:/' "$shipit/ledger.jsonl" || true; fi
# Release dirs are named by shipit; the run keeps only release ids.
# shellcheck disable=SC2012
if [ -d "$deploy_to/releases" ]; then ls -1 "$deploy_to/releases" | sed 's/^/release:/'; fi
print_current
