# shellcheck shell=sh
# The deploy's `check` step: dirs exist and are writable, the tools in
# `tools` (space-separated names) are there, the linked files given as
# arguments (paths relative to `shared/`) are in place (their dirs are
# created when missing), and `deploy_to`'s
# file system has at least `min_free_kb` KiB free. Reports every problem,
# then fails if there was any.
: "${deploy_to?}" "${tools?}" "${min_free_kb?}"
set -e
fail=0
mkdir -p "$deploy_to/releases" "$deploy_to/shared" "$deploy_to/.shipit"
for d in "$deploy_to/releases" "$deploy_to/shared"; do if [ ! -w "$d" ]; then echo "not writable: $d" >&2; fail=1; fi; done
for t in $tools; do
  if ! command -v "$t" >/dev/null 2>&1; then echo "missing command: $t" >&2; fail=1; fi
done
# A missing linked file's directory in `shared/` is created, so the
# operator can put the file there.
for f in "$@"; do
  if [ ! -e "$deploy_to/shared/$f" ]; then
    case $f in
      */*) dir="$deploy_to/shared/${f%/*}"
        if [ ! -d "$dir" ] && mkdir -p "$dir"; then echo "created $dir for the linked file ${f##*/}" >&2; fi ;;
    esac
    echo "missing linked file: $deploy_to/shared/$f" >&2; fail=1
  fi
done
free=$(df -Pk "$deploy_to" | awk 'NR==2 {print $4}')
if [ -n "$free" ] && [ "$free" -lt "$min_free_kb" ]; then echo "low disk space: ${free} KiB free under $deploy_to, need $min_free_kb" >&2; fail=1; fi
exit $fail
