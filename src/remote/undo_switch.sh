# shellcheck shell=sh
# First part of the undo of the publish of release `release` on one host,
# whatever point the publish reached (it may have failed, or lost its
# connection, after `current` was renamed). When `current` points at
# `release`: points it back at `previous` (removes it when `previous` is
# empty) and prints `undo:switched_back`; the `failed` record, the
# previous release's restart and smoke test follow. Otherwise `current`
# was never switched: prints `undo:not_switched` and where `current`
# points, and ends the script successfully, changing nothing (the staged
# release is discarded as a staged one is, discard_staged.sh).
: "${deploy_to?}" "${current?}" "${release?}" "${previous?}"
link="$deploy_to/$current"
cur=$(readlink "$link" 2>/dev/null || true)
if [ "$cur" != "releases/$release" ]; then
  echo undo:not_switched
  if [ -n "$cur" ]; then printf 'current:%s\n' "$cur"; fi
  exit 0
fi
if [ -n "$previous" ]; then
  tmp="$deploy_to/.current.$release"
  if ! { ln -sfn "releases/$previous" "$tmp" && mv -fT "$tmp" "$link"; }; then echo "could not point $current back at $previous" >&2; exit 1; fi
else
  rm -f "$link" || exit 1
fi
echo undo:switched_back
