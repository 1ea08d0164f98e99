# shellcheck shell=sh
# Reads a promotion's target host: where `current` points and the first
# line of its REVISION, then `ledger_mark` and the ledger. The trust root
# (allowed signers, pinned gate) is never read here: see trust_root.sh.
# Changes nothing.
: "${deploy_to?}" "${current?}" "${ledger_mark?}"
if [ -L "$deploy_to/$current" ]; then printf 'current:%s\n' "$(readlink "$deploy_to/$current")"; fi
if [ -f "$deploy_to/$current/REVISION" ]; then printf 'current_commit:%s\n' "$(head -n 1 "$deploy_to/$current/REVISION")"; fi
printf '%s\n' "$ledger_mark"
if [ -f "$deploy_to/.shipit/ledger.jsonl" ]; then cat "$deploy_to/.shipit/ledger.jsonl"; fi
