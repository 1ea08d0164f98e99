# shellcheck shell=sh
# Runs the user's command `task_run` in `task_dir` with the SHIPIT_*
# variables in its environment, retrying `task_retries` times
# `task_interval` seconds apart. The command is the one thing here that is
# meant to be shell: it comes as a value and runs with `eval`. The
# positional parameters are NAME VALUE pairs (the `env:` of deploy.yml),
# exported for the command only.
: "${SHIPIT_RELEASE?}" "${SHIPIT_COMMIT?}" "${SHIPIT_STAGE?}" "${SHIPIT_RELEASE_PATH?}" "${SHIPIT_DEPLOY_TO?}"
: "${task_dir?}" "${task_run?}" "${task_retries?}" "${task_interval?}"
# Whatever follows (a ledger line) must not hide a failure.
set -e
export SHIPIT_RELEASE SHIPIT_COMMIT SHIPIT_STAGE SHIPIT_RELEASE_PATH SHIPIT_DEPLOY_TO
run_task() {
  (
    cd "$task_dir" || exit 1
    while [ "$#" -gt 1 ]; do export "$1=$2"; shift 2; done
    eval "$task_run"
  )
}
if [ "$task_retries" -eq 0 ]; then
  run_task "$@"
else
  n=0
  until run_task "$@"; do
    n=$((n+1))
    if [ "$n" -gt "$task_retries" ]; then echo "failed after $n attempts" >&2; exit 1; fi
    sleep "$task_interval"
  done
fi
