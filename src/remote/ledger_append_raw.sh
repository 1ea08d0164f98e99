# shellcheck shell=sh
# Appends one complete ledger line `line` (built and timestamped by
# shipit), ending a line cut short by a crash first.
: "${deploy_to?}" "${line?}"
set -e
mkdir -p "$deploy_to/.shipit"
ledger="$deploy_to/.shipit/ledger.jsonl"
if [ -s "$ledger" ] && [ -n "$(tail -c 1 "$ledger")" ]; then printf '\n' >> "$ledger"; fi
printf '%s\n' "$line" >> "$ledger"
