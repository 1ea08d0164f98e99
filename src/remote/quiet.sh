# shellcheck shell=sh
# Runs the filled script `script` in a subshell with its stdout discarded;
# when it fails, stops with its status.
: "${script?}"
( eval "$script" ) >/dev/null || exit $?
