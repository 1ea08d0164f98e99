# shellcheck shell=sh
# Frees the deploy lock only when it is still ours (its record carries
# `token`). The lock is renamed away before it is removed, so it never
# exists without its record. Removes the run's stop flags.
: "${deploy_to?}" "${token?}"
set -e
lock="$deploy_to/.shipit/lock"
gone="$deploy_to/.shipit/lock.gone.$$"
if grep -qF "$token" "$lock/info" 2>/dev/null; then mv -T "$lock" "$gone" && rm -rf "$gone"; fi
rm -f "$deploy_to/.shipit"/stop-*
