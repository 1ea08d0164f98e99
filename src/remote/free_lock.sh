# shellcheck shell=sh
# Frees the deploy lock, but only the one that was seen: the lock whose
# record carries `token`, or with `any_holder` `yes` (a lock without a
# readable record) whatever is there. Then runs the filled script `record`
# (a ledger line), unless it is empty. Prints `result:freed`,
# `result:already_free` or `result:changed` (the lock changed hands
# meanwhile and was left alone), and `ledger:failed` when the record could
# not be written.
: "${deploy_to?}" "${token?}" "${any_holder?}" "${record?}"
lock="$deploy_to/.shipit/lock"
if [ ! -e "$lock" ]; then
  echo result:already_free
elif [ "$any_holder" = yes ] || grep -qF "$token" "$lock/info" 2>/dev/null; then
  rm -rf "$lock" && echo result:freed
  if [ -n "$record" ]; then
    # A subshell of its own, so that the record's `set -e` works inside it.
    ( eval "$record" )
    rc=$?
    if [ "$rc" -ne 0 ]; then echo ledger:failed; fi
  fi
else
  echo result:changed
fi
