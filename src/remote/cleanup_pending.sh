# shellcheck shell=sh
# The cleanup step of a plan made before the lock step read the host (as
# `shipit plan` shows it): a deploy decides which releases to remove from
# what its lock step read. Removes nothing.
: "${keep?}"
echo "releases to remove: decided after the lock step, from this host's releases and ledger (keep_releases: $keep good ones; never current, this release or the rollback target); until then none is removed"
