# shellcheck shell=sh
# Prints `current:<link target>` and `commit:<REVISION>` when they exist;
# changes nothing.
: "${deploy_to?}" "${current?}"
c="$deploy_to/$current"
if [ -L "$c" ]; then printf 'current:%s\n' "$(readlink "$c")"; fi
if [ -f "$c/REVISION" ]; then printf 'commit:%s\n' "$(cat "$c/REVISION")"; fi
