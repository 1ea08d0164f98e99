# shellcheck shell=sh
# `shipit check`'s preflight: prints facts as `key:value` lines, changes
# nothing. When `deploy_to` does not exist yet, its nearest existing parent
# is examined instead. `tools` are the commands a deploy needs
# (space-separated), the arguments the linked files that must be in
# `shared/`. Exits 0 whenever it ran to its end.
: "${deploy_to?}" "${tools?}"
d=$deploy_to
if [ -e "$d" ] && [ ! -d "$d" ]; then echo deploy_to:not_dir; elif [ -d "$d" ]; then echo deploy_to:exists; else echo deploy_to:missing; fi
base=$d
while [ ! -d "$base" ]; do base=$(dirname -- "$base"); done
printf 'base:%s\n' "$base"
if [ -w "$base" ] && [ -x "$base" ]; then echo base_writable:yes; else echo base_writable:no; fi
# The dirs a deploy writes into, those that exist.
if [ -d "$d" ] && { [ ! -w "$d" ] || [ ! -x "$d" ]; }; then echo not_writable:.; fi
for rel in releases shared .shipit; do
  if [ -d "$d/$rel" ] && { [ ! -w "$d/$rel" ] || [ ! -x "$d/$rel" ]; }; then echo "not_writable:$rel"; fi
done
for t in $tools; do
  if command -v "$t" >/dev/null 2>&1; then printf 'tool:%s:%s\n' "$t" "$(command -v "$t")"; else echo "missing_tool:$t"; fi
done
printf 'free_kb:%s\n' "$(df -Pk "$base" 2>/dev/null | awk 'NR==2 {print $4}')"
for f in "$@"; do
  if [ ! -e "$d/shared/$f" ]; then printf 'missing_file:%s\n' "$f"; fi
done
lock="$d/.shipit/lock"
if [ -e "$lock" ]; then echo lock:held; if [ -f "$lock/info" ]; then sed 's/^/lockinfo:/' "$lock/info"; fi; else echo lock:free; fi
exit 0
