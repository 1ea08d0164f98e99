# shellcheck shell=sh
# Fills a new release dir from the release's archive `releases/.ID.tar`
# (first written from the host's git mirror when `export` is `git`, else
# already uploaded), then writes REVISION and REVISION_TIME (the commit's
# time, epoch seconds: `commit_time`, or read from the mirror when empty).
# With `tree` (`repo_tree`), only that directory of the commit is exported
# (strategy copy: the uploaded archive holds only it already).
# The `staged` ledger line follows (ledger_append.sh). When anything from
# the dir's creation to that line fails (a full disk, a broken mirror),
# the script removes the release dir, the archive and the submodules' work
# dir (submodules_git.sh, which may follow in the same shell) before it
# ends: a
# failed creation leaves nothing that could pass for a release (also when
# it is stopped by a signal: its time limit). A release dir that exists
# already is not this run's: refused with status `exists_status`, left
# alone.
: "${deploy_to?}" "${release?}" "${commit?}" "${commit_time?}" "${export?}" "${tree?}" "${exists_status?}"
set -e
rel="$deploy_to/releases/$release"
tar="$deploy_to/releases/.$release.tar"
if [ -e "$rel" ]; then echo "release dir $rel already exists" >&2; exit "$exists_status"; fi
if [ "$export" = git ] && [ -n "$tree" ] && [ "$(git --git-dir="$deploy_to/repo" cat-file -t "$commit:$tree" 2>/dev/null)" != tree ]; then
  echo "repo_tree \`$tree\` is not a directory in commit $commit" >&2; exit 1
fi
mkdir -p "$deploy_to/releases"
mkdir "$rel"
# From here on the dir and the archive are this run's; the trap stays set
# for the `staged` record that follows.
unmake() {
  if [ "$?" -ne 0 ]; then rm -rf "$rel" "$tar" "$deploy_to/releases/.$release.submodules"; echo "release $release could not be created; removed what was made of it" >&2; fi
}
trap unmake EXIT
trap 'exit 143' TERM HUP INT
if [ "$export" = git ]; then git --git-dir="$deploy_to/repo" archive --format=tar -o "$tar" "$commit${tree:+:$tree}"; fi
tar -x -f "$tar" -C "$rel"
rm -f "$tar"
printf '%s\n' "$commit" > "$rel/REVISION"
if [ -z "$commit_time" ] && [ "$export" = git ]; then commit_time=$(git --git-dir="$deploy_to/repo" show -s --format=%ct "$commit"); fi
if [ -n "$commit_time" ]; then printf '%s\n' "$commit_time" > "$rel/REVISION_TIME"; fi
