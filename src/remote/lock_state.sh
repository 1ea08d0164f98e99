# shellcheck shell=sh
# Prints the deploy lock's state: `lock:free`, or `lock:held` and the
# holder's record as `lockinfo:` lines. Reads only.
: "${deploy_to?}"
lock="$deploy_to/.shipit/lock"
if [ -e "$lock" ]; then echo lock:held; if [ -f "$lock/info" ]; then sed 's/^/lockinfo:/' "$lock/info"; fi; else echo lock:free; fi
