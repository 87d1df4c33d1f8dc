"""The real engine CLI with one command replaced by a function that raises an exception no code foresees (a bug),
so that the error path for unexpected failures can be followed from a Logic caller. Used by
test_slicer_error_contract: `python engine_with_a_bug.py SUBCOMMAND ARGS...`."""

import sys

import emim.commands.segment
from emim.cli import main


def _a_bug(args):
    raise RuntimeError("index 7 is out of bounds for axis 0 with size 4")


emim.commands.segment.run = _a_bug
sys.exit(main(sys.argv[1:]))
