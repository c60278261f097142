"""Shared command line of the benchmarks that start a cluster of mounts with the test suite's
helpers (bench/counter.py, bench/write_phases.py): `--build-dir DIR` names the leasefs to run,
and arguments after `--` go to every `leasefs mount`."""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_command_line(doc, add_arguments):
    """Parses sys.argv for a benchmark whose docstring is `doc`; `add_arguments(parser)` adds its
    own options. Returns (args, mount_args, binary), with LEASEFS_BIN set to the binary and the
    test helpers (tests/py) importable; exits with one line if there is no binary."""
    argv = sys.argv[1:]
    mount_args = []
    if "--" in argv:
        cut = argv.index("--")
        argv, mount_args = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--build-dir", required=True, help="where leasefs is (DIR/leasefs)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    binary = os.path.abspath(os.path.join(args.build_dir, "leasefs"))
    if not os.access(binary, os.X_OK):
        sys.exit(f"{os.path.basename(sys.argv[0])}: no leasefs binary at {binary}")
    os.environ["LEASEFS_BIN"] = binary
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))
    return args, mount_args, binary
