# shellcheck shell=sh
# Strategy git: clones the host's mirror of `repository` once, then
# fetches; then makes sure `commit` is there.
: "${deploy_to?}" "${repository?}" "${commit?}"
set -e
repo="$deploy_to/repo"
tmp="$deploy_to/repo.tmp"
if [ -d "$repo" ]; then
  git --git-dir="$repo" remote set-url origin "$repository" && git --git-dir="$repo" fetch --quiet --prune origin '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*'
else
  rm -rf "$tmp" && git clone --quiet --mirror "$repository" "$tmp" && mv "$tmp" "$repo"
fi
if ! git --git-dir="$repo" cat-file -e "$commit^{commit}"; then echo "commit $commit is not in $repository" >&2; exit 1; fi
