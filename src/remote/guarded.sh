# shellcheck shell=sh
# Runs the filled script `script` in a subshell; when it fails, says
# `message` and fails.
: "${script?}" "${message?}"
if ! ( eval "$script" ); then echo "$message" >&2; exit 1; fi
