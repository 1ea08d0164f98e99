# shellcheck shell=sh
# Before the undo of a rollback: when `current` does not point at release
# `to` (it was never switched), says so on stdout and ends the script
# successfully; the switch back follows (switch_back.sh).
: "${deploy_to?}" "${current?}" "${to?}"
cur=$(readlink "$deploy_to/$current" 2>/dev/null || true)
if [ "${cur##*/}" != "$to" ]; then echo 'current was not switched; left as it is'; exit 0; fi
