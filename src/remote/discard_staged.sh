# shellcheck shell=sh
# Undo of a staging phase that did not complete: removes the staged
# release dir (never the one `current` points at) and its archive. The
# `failed` ledger line follows (ledger_append.sh).
: "${deploy_to?}" "${current?}" "${release?}"
set -e
if [ "$(readlink "$deploy_to/$current" 2>/dev/null)" != "releases/$release" ]; then rm -rf "$deploy_to/releases/$release"; fi
rm -f "$deploy_to/releases/.$release.tar" "$deploy_to/releases/.$release.tar.part"
