#!/bin/sh
# ctest cleanup fixture: the last line of defence after the suite. Test harnesses unmount what they
# mount and their daemons die with them (PR_SET_PDEATHSIG); this removes anything a test killed
# hard (SIGKILL, timeout) still left: leasefs mounts under the test temp roots, then their daemons.
# Exits non-zero if it had to clean anything, so a leaking test does not go unnoticed.
set -u
leaked=0
for mp in $(awk '$3 == "fuse.leasefs" && $2 ~ /^\/tmp\/leasefs-(py|test|it|unit)-/ {print $2}' /proc/mounts); do
  echo "cleanup: unmounting leaked mount $mp" >&2
  fusermount3 -u "$mp" 2>/dev/null || fusermount3 -u -z "$mp"
  leaked=1
done
for pid in $(pgrep -f 'leasefs mount .*/tmp/leasefs-(py|test|it|unit)-' 2>/dev/null); do
  echo "cleanup: killing leaked daemon $pid" >&2
  kill -9 "$pid" 2>/dev/null
  leaked=1
done
exit $leaked
