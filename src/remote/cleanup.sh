# shellcheck shell=sh
# Removes the releases given as arguments, and only those: which ones was
# decided by shipit from the host's releases and ledger. An argument that
# is not a plain release name (letters, digits, `.`, `_`, `-`, not starting
# with `.` or `-`: a minted id or a `deploy --release` one), or names the
# release `current` points at, is left alone. Prints `removed ID` for each
# release removed.
: "${deploy_to?}" "${current?}"
set -e
cd "$deploy_to/releases"
cur=$(readlink "$deploy_to/$current" 2>/dev/null || true)
cur=${cur##*/}
for id in "$@"; do
  case $id in
    '' | .* | -* | *[!A-Za-z0-9._-]*) echo "not a release id, left alone: $id" >&2; continue ;;
  esac
  if [ "$id" = "$cur" ]; then echo "release $id is current, left alone" >&2; continue; fi
  if [ -e "$id" ] || [ -L "$id" ]; then rm -rf -- "$id" && echo "removed $id"; fi
done
