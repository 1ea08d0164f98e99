# shellcheck shell=sh
# Writes stdin to `dest` (in dir `dir`) with mode `mode` (octal),
# atomically: a temp file named with `tag`, then a rename.
: "${dest?}" "${dir?}" "${mode?}" "${tag?}"
set -e
tmp="$dest.shipit-$tag"
mkdir -p "$dir"
cat > "$tmp"
chmod "$mode" "$tmp"
mv -f "$tmp" "$dest"
