# shellcheck shell=sh
# Switches `current` to release `release` atomically (temp link + rename).
# The `published` ledger line follows (ledger_append.sh).
: "${deploy_to?}" "${current?}" "${release?}"
set -e
tmp="$deploy_to/.current.$release"
if [ ! -d "$deploy_to/releases/$release" ]; then echo "release $release is not staged" >&2; exit 1; fi
ln -sfn "releases/$release" "$tmp"
mv -fT "$tmp" "$deploy_to/$current"
