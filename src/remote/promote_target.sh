# shellcheck shell=sh
# Reads a promotion's target host: where `current` points and its commit,
# then (when `signers` is not empty) `signers_mark` and the allowed signers
# file, or `signers_mark missing`, then `ledger_mark` and the ledger.
# Changes nothing.
: "${deploy_to?}" "${current?}" "${signers?}" "${signers_mark?}" "${ledger_mark?}"
if [ -L "$deploy_to/$current" ]; then printf 'current:%s\n' "$(readlink "$deploy_to/$current")"; fi
if [ -f "$deploy_to/$current/REVISION" ]; then printf 'current_commit:%s\n' "$(cat "$deploy_to/$current/REVISION")"; fi
if [ -n "$signers" ]; then
  if [ -f "$signers" ]; then printf '%s\n' "$signers_mark"; cat "$signers"; else printf '%s missing\n' "$signers_mark"; fi
fi
printf '%s\n' "$ledger_mark"
if [ -f "$deploy_to/.shipit/ledger.jsonl" ]; then cat "$deploy_to/.shipit/ledger.jsonl"; fi
