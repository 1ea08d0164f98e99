# shellcheck shell=sh
# `shipit releases`: the release dirs (with their REVISION), where
# `current` points, then `ledger_mark` and the ledger as it is. Reads only.
: "${deploy_to?}" "${current?}" "${ledger_mark?}"
if [ -d "$deploy_to" ]; then echo deploy_to:exists; else echo deploy_to:missing; fi
if [ -d "$deploy_to/releases" ]; then for r in "$deploy_to/releases"/*; do if [ -d "$r" ]; then printf 'release:%s:%s\n' "${r##*/}" "$(head -n 1 "$r/REVISION" 2>/dev/null)"; fi; done; fi
if [ -L "$deploy_to/$current" ]; then printf 'current:%s\n' "$(readlink "$deploy_to/$current")"; fi
printf '%s\n' "$ledger_mark"
if [ -f "$deploy_to/.shipit/ledger.jsonl" ]; then cat "$deploy_to/.shipit/ledger.jsonl"; fi
