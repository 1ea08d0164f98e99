# shellcheck shell=sh
# Symlinks linked dirs and files from `shared/` into release `release`,
# creating shared dirs that are missing: with `seed` non-empty, a missing
# shared dir is first copied from the release when the release has it as a
# real directory (Deployer's shared_dirs). The arguments come in pairs:
# `dir PATH` or `file PATH`, paths relative to the release. A linked path
# whose parent inside the release is a symlink leading out of `deploy_to`
# (a repository can commit `tmp -> /var`) is refused: the link, and the
# `rm -rf` before it, would land outside.
: "${deploy_to?}" "${release?}" "${seed?}"
set -e
rel="$deploy_to/releases/$release"
dt=
while [ "$#" -ge 2 ]; do
  kind=$1
  path=$2
  shift 2
  # Every parent of the path inside the release, shortest first.
  prefix=
  rest=$path
  while case $rest in */*) true ;; *) false ;; esac; do
    prefix=${prefix:+$prefix/}${rest%%/*}
    rest=${rest#*/}
    if [ -z "$dt" ]; then dt=$(cd "$deploy_to" && pwd -P); fi
    if [ -L "$rel/$prefix" ]; then
      r=$(cd "$rel/$prefix" 2>/dev/null && pwd -P) || r=
      case "$r/" in
        "$dt"/*) ;;
        *) echo "linked path \`$path\` goes through \`$prefix\`, a symlink in the release that leads out of $deploy_to; refusing to link there" >&2; exit 1 ;;
      esac
    fi
  done
  target="$deploy_to/shared/$path"
  link="$rel/$path"
  if [ "$kind" = dir ]; then
    if [ -n "$seed" ] && [ ! -e "$target" ] && [ ! -L "$target" ] && [ -d "$link" ] && [ ! -L "$link" ]; then
      mkdir -p "${target%/*}" && rm -rf "$target.shipit-seed" && cp -R -p "$link" "$target.shipit-seed" && mv "$target.shipit-seed" "$target"
    fi
    mkdir -p "$target" "${link%/*}" && rm -rf "$link" && ln -s "$target" "$link"
  else
    mkdir -p "${link%/*}" && rm -rf "$link" && ln -s "$target" "$link"
  fi
done
