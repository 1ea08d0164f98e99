# shellcheck shell=sh
# Strategy git with `submodules: true`: fills every submodule of release
# `release` (nested ones too). A submodule is a gitlink in the commit's
# tree (under `tree`, `repo_tree`, when set); its URL comes from the
# `.gitmodules` of the commit that holds it, `./` and `../` URLs taken
# relative to that repository's URL (`repository` at the top), as git does.
# Each submodule repository gets a mirror under `repo-modules/` (named by a
# hash of its URL, never by a name from the repository) and its commit is
# exported into the release. Paths that would leave the release are refused.
# Work files live in `releases/.ID.submodules/`, removed at the end.
: "${deploy_to?}" "${release?}" "${commit?}" "${repository?}" "${tree?}"
set -e
rel="$deploy_to/releases/$release"
mods="$deploy_to/repo-modules"
tab=$(printf '\t')
# The queue's field separator: not whitespace (so empty fields are kept),
# and never in a path git prints unquoted.
us=$(printf '\037')
work="$deploy_to/releases/.$release.submodules"
rm -rf "$work" && mkdir -p "$work"
queue="$work/queue"; next="$work/next"; links="$work/links"; keys="$work/keys"
# One line a repository to look into: git dir, commit, its URL, where its
# tree lands in the release ("" for the top), the directory of the commit
# exported there ("" for the whole commit).
printf '%s\037%s\037%s\037%s\037%s\n' "$deploy_to/repo" "$commit" "$repository" "" "$tree" > "$queue"
while [ -s "$queue" ]; do
  : > "$next"
  while IFS="$us" read -r gd sha base prefix sub <&3; do
    git -c core.quotePath=false --git-dir="$gd" ls-tree -r "$sha${sub:+:$sub}" > "$links"
    while IFS="$tab" read -r meta path <&4; do
      case "$meta" in 160000\ *) ;; *) continue ;; esac
      link=${meta##* }
      case "$path" in
        \"*|/*|../*|*/../*|*/..|..) echo "submodule path $path in commit $sha cannot be used" >&2; exit 1 ;;
      esac
      full="${sub:+$sub/}$path"
      git --git-dir="$gd" config --blob "$sha:.gitmodules" --name-only --get-regexp '^submodule\..*\.path$' > "$keys" 2>/dev/null || : > "$keys"
      name=""
      while read -r key <&5; do
        if [ "$(git --git-dir="$gd" config --blob "$sha:.gitmodules" --get "$key")" = "$full" ]; then
          name=${key#submodule.}; name=${name%.path}
        fi
      done 5< "$keys"
      if [ -z "$name" ]; then echo "submodule $full of commit $sha is not in its .gitmodules" >&2; exit 1; fi
      url=$(git --git-dir="$gd" config --blob "$sha:.gitmodules" --get "submodule.$name.url" || true)
      case "$url" in
        "") echo "submodule $full of commit $sha has no url in .gitmodules" >&2; exit 1 ;;
        *"$us"*|*"$tab"*) echo "submodule $full of commit $sha has a url with control characters" >&2; exit 1 ;;
      esac
      case "$url" in
        ./*|../*)
          b=${base%/}; u=$url
          while :; do
            case "$u" in
              ./*) u=${u#./} ;;
              ../*) u=${u#../}; case "$b" in */*) b=${b%/*} ;; *:*) b=${b%%:*}: ;; *) b=. ;; esac ;;
              *) break ;;
            esac
          done
          case "$b" in *:) url="$b$u" ;; *) url="$b/$u" ;; esac ;;
      esac
      m="$mods/$(printf '%s' "$url" | sha256sum | cut -c1-16)"
      if [ -d "$m" ]; then
        if ! git --git-dir="$m" cat-file -e "$link^{commit}" 2>/dev/null; then
          git --git-dir="$m" fetch --quiet --prune origin '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*' < /dev/null
        fi
      else
        mkdir -p "$mods"
        rm -rf "$m.tmp" && git clone --quiet --mirror -- "$url" "$m.tmp" < /dev/null && mv "$m.tmp" "$m"
      fi
      if ! git --git-dir="$m" cat-file -e "$link^{commit}" 2>/dev/null; then
        echo "commit $link of submodule $full is not in $url" >&2; exit 1
      fi
      dest="$rel/$prefix$path"
      mkdir -p "$dest"
      case "$(cd "$dest" && pwd -P)/" in
        "$(cd "$rel" && pwd -P)"/?*) ;;
        *) echo "submodule path $prefix$path leaves the release" >&2; exit 1 ;;
      esac
      git --git-dir="$m" archive --format=tar -o "$work/tar" "$link"
      tar -x -f "$work/tar" -C "$dest" && rm -f "$work/tar"
      printf '%s\037%s\037%s\037%s\037%s\n' "$m" "$link" "$url" "$prefix$path/" "" >> "$next"
    done 4< "$links"
  done 3< "$queue"
  mv -f "$next" "$queue"
done
rm -rf "$work"
