#!/bin/sh
# ctest cleanup fixture: the last line of defence after the suite. Test harnesses unmount what they
# mount and their daemons die with them (PR_SET_PDEATHSIG); this removes anything a test killed
# hard (SIGKILL, timeout) still left below this run's own test directory ($1, every mounting
# test's TMPDIR): mounts first, then their daemons (leasefs, and bindfs for host clients). It
# exits non-zero if it had to clean anything, so a leaking test does not go unnoticed. Other
# runs on the machine are left alone.
set -u
root=${1:?usage: cleanup_mounts.sh TEST_TMPDIR}
leaked=0
# Newest first: a leasefs mount keeps the caching client (bindfs) it was mounted on busy.
for mp in $(awk -v root="$root/" '$3 ~ /^fuse/ && index($2, root) == 1 {print $2}' /proc/mounts | tac); do
  echo "cleanup: unmounting leaked mount $mp" >&2
  fusermount3 -u "$mp" 2>/dev/null || fusermount3 -u -z "$mp"
  leaked=1
done
for pid in $(pgrep -f "(leasefs mount|bindfs) .*$root/" 2>/dev/null); do
  echo "cleanup: killing leaked daemon $pid" >&2
  kill -9 "$pid" 2>/dev/null
  leaked=1
done
exit $leaked
