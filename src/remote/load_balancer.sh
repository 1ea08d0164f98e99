# shellcheck shell=sh
# Takes one host out of the load balancer's pool, or puts it back: runs
# the user's `drain` or `undrain` command `lb_run` (from deploy.yml,
# rendered for the host; it is the one thing here that is meant to be
# shell and runs with `eval`) with SHIPIT_HOST and SHIPIT_STAGE exported,
# then waits `lb_wait` seconds for open connections to finish (the
# `wait:` of a drain; 0 for an undrain). Runs on the machine running
# shipit (`local: true`) or on the host itself.
: "${SHIPIT_HOST?}" "${SHIPIT_STAGE?}" "${lb_run?}" "${lb_wait?}"
set -e
export SHIPIT_HOST SHIPIT_STAGE
( eval "$lb_run" )
if [ "$lb_wait" != 0 ]; then sleep "$lb_wait"; fi
