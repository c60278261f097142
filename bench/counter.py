#!/usr/bin/env python3
"""bench/counter.py — the counter workload of the cluster test suite, timed.

N mounts (hosts) of one directory share a fresh local lease store; on each mount two writers
(one BEGIN IMMEDIATE, one deferred BEGIN) increment a counter PER_WRITER times and a reader
checks that no read is torn (tests/py/test_cluster.py, run_counter_workload). Prints the wall
time, the commits, the reads and the torn reads, and fails unless the counter is exact and
integrity_check ok.

  bench/counter.py --build-dir build [--mounts 3] [--per-writer 40] [--repeat 3] [-- MOUNT_ARGS]

Arguments after `--` go to every `leasefs mount` (e.g. `-- --lock-hold 0.25`). Compare
binaries by running it once per --build-dir, side by side on a quiet machine.
"""
import os
import sys
import time

from cluster_bench import parse_command_line


def add_arguments(parser):
    parser.add_argument("--mounts", type=int, default=3)
    parser.add_argument("--per-writer", type=int, default=40, help="increments per writer")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--journal-mode", default="delete")


def main():
    args, mount_args, binary = parse_command_line(__doc__, add_arguments)
    if args.mounts < 1 or args.per_writer < 1 or args.repeat < 1:
        sys.exit("counter.py: --mounts, --per-writer and --repeat must be at least 1")
    from harness import temp_root
    from test_cluster import (counter_value, create_counter, run_counter_workload,
                              start_cluster, stop_all)

    print(f"# bench/counter.py {' '.join(sys.argv[1:])}")
    print(f"# {args.mounts} mounts x 2 writers x {args.per_writer} increments, a reader per "
          f"mount, journal_mode={args.journal_mode}, leasefs {binary}")
    failed = False
    for run in range(args.repeat):
        with temp_root() as root:
            mounts = start_cluster(root, args.mounts, *mount_args)
            try:
                paths = [os.path.join(m.mountpoint, "counter.db") for m in mounts]
                create_counter(paths[0], args.journal_mode)
                start = time.monotonic()
                committed, reads, torn, _ = run_counter_workload(paths, args.per_writer)
                elapsed = time.monotonic() - start
                value, check = counter_value(paths[0])
            finally:
                stop_all(mounts)
        exact = (value == committed == 2 * args.mounts * args.per_writer and torn == 0
                 and check == "ok")
        failed = failed or not exact
        print(f"run {run + 1}: {elapsed:.1f} s, {committed} commits ({committed / elapsed:.1f}/s), "
              f"{reads} reads, {torn} torn, counter {value}, integrity_check {check}: "
              f"{'ok' if exact else 'WRONG'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
