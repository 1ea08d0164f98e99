# shellcheck shell=sh
# Strategy copy: receives the archive of release `release` on stdin into
# `releases/.ID.tar`, and keeps it only when its digest is `digest`. A
# partial archive (a full disk, a lost connection) is removed.
: "${deploy_to?}" "${release?}" "${digest?}"
set -e
tar="$deploy_to/releases/.$release.tar"
part="$tar.part"
mkdir -p "$deploy_to/releases"
unmake() { if [ "$?" -ne 0 ]; then rm -f "$part"; fi; }
trap unmake EXIT
cat > "$part"
got="sha256:$(sha256sum "$part" | cut -d' ' -f1)"
if [ "$got" != "$digest" ]; then echo "archive digest mismatch: expected $digest, got $got" >&2; exit 1; fi
mv -f "$part" "$tar"
