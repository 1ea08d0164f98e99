# shellcheck shell=sh
# Runs the user's command `task_run` in `task_dir` with the SHIPIT_*
# variables in its environment, retrying `task_retries` times
# `task_interval` seconds apart. The command is the one thing here that is
# meant to be shell: it comes as a value and runs with `eval`.
: "${SHIPIT_RELEASE?}" "${SHIPIT_COMMIT?}" "${SHIPIT_STAGE?}" "${SHIPIT_RELEASE_PATH?}" "${SHIPIT_DEPLOY_TO?}"
: "${task_dir?}" "${task_run?}" "${task_retries?}" "${task_interval?}"
# Whatever follows (a ledger line) must not hide a failure.
set -e
export SHIPIT_RELEASE SHIPIT_COMMIT SHIPIT_STAGE SHIPIT_RELEASE_PATH SHIPIT_DEPLOY_TO
if [ "$task_retries" -eq 0 ]; then
  ( cd "$task_dir" && eval "$task_run" )
else
  n=0
  until ( cd "$task_dir" && eval "$task_run" ); do
    n=$((n+1))
    if [ "$n" -gt "$task_retries" ]; then echo "failed after $n attempts" >&2; exit 1; fi
    sleep "$task_interval"
  done
fi
