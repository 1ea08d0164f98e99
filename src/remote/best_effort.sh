# shellcheck shell=sh
# Runs the filled script `script` (a record: a ledger line) in a
# subshell, its stdout discarded. When it fails (a full disk, a ledger
# that is not a file), prints `ledger:failed` and goes on: an undo is
# never stopped by a record it cannot write, and the run says the record
# is missing.
: "${script?}"
if ! ( eval "$script" ) >/dev/null; then echo ledger:failed; fi
