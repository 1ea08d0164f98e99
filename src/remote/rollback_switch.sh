# shellcheck shell=sh
# Switches `current` from release `from` to release `to` atomically (temp
# link + rename, as a publish does), after making sure `to` is there and
# `current` is still `from`.
: "${deploy_to?}" "${current?}" "${from?}" "${to?}"
set -e
tmp="$deploy_to/.current.$to"
if [ ! -d "$deploy_to/releases/$to" ]; then echo "release $to is not on this host" >&2; exit 1; fi
cur=$(readlink "$deploy_to/$current" 2>/dev/null || true)
if [ "${cur##*/}" != "$from" ]; then echo "current is no longer $from (it points at $cur)" >&2; exit 1; fi
ln -sfn "releases/$to" "$tmp"
mv -fT "$tmp" "$deploy_to/$current"
