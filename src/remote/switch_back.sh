# shellcheck shell=sh
# Undo of the publish of release `release`: points `current` back at
# release `previous`, or removes it when `previous` is empty (there was
# none). The `failed` ledger line follows (ledger_append.sh).
: "${deploy_to?}" "${current?}" "${release?}" "${previous?}"
set -e
tmp="$deploy_to/.current.$release"
if [ -n "$previous" ]; then
  ln -sfn "releases/$previous" "$tmp" && mv -fT "$tmp" "$deploy_to/$current"
else
  rm -f "$deploy_to/$current"
fi
