# shellcheck shell=sh
# Appends `line` to `revisions.log` (Capistrano's record of deploys).
: "${deploy_to?}" "${line?}"
set -e
printf '%s\n' "$line" >> "$deploy_to/revisions.log"
