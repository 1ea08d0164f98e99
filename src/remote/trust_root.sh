# shellcheck shell=sh
# Reads the trust root of a promotion's gate on a target host, apart from
# anything a release or the ledger holds: the login's uid, then for each
# file given as an argument (`f1`, `f2`, ... in that order) whether it is
# there, who owns it and its directory, their modes, whether this login
# can write them, and its bytes in hex, so nothing in a file can pass for
# the framing. Changes nothing.
printf 'uid:%s\n' "$(id -u)"
i=0
for f in "$@"; do
  i=$((i + 1))
  d=$(dirname -- "$f")
  if [ -L "$f" ]; then
    printf 'f%s:symlink\n' "$i"
  elif [ ! -e "$f" ]; then
    printf 'f%s:missing\n' "$i"
  elif [ ! -f "$f" ] || [ ! -r "$f" ]; then
    printf 'f%s:unreadable\n' "$i"
  else
    w=no; if [ -w "$f" ]; then w=yes; fi
    dw=no; if [ -w "$d" ]; then dw=yes; fi
    printf 'f%s:meta:%s:%s:%s:%s:%s:%s\n' "$i" "$(stat -c %u -- "$f")" "$(stat -c %a -- "$f")" "$w" "$(stat -L -c %u -- "$d")" "$(stat -L -c %a -- "$d")" "$dw"
    printf 'f%s:hex:%s\n' "$i" "$(od -An -v -tx1 -- "$f" | tr -d ' \n')"
  fi
done
echo end
