# shellcheck shell=sh
# Prints `current:TARGET` and `current_commit:SHA` for what `current`
# points at, when it does; changes nothing.
: "${deploy_to?}" "${current?}"
set -e
if [ -L "$deploy_to/$current" ]; then printf 'current:%s\n' "$(readlink "$deploy_to/$current")"; fi
if [ -f "$deploy_to/$current/REVISION" ]; then printf 'current_commit:%s\n' "$(cat "$deploy_to/$current/REVISION")"; fi
