"""Building any command's parser (`emim COMMAND --help`) imports neither torch nor MONAI: help is instant and a
broken GPU stack cannot stop a user from reading it."""

from __future__ import annotations

import subprocess
import sys

from emim.cli import COMMANDS

BLOCKED = ("torch", "monai")


def test_every_subcommand_parser_builds_with_torch_and_monai_blocked():
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(name + " is blocked: a parser must not need it")
sys.meta_path.insert(0, Block())
from emim.cli import COMMANDS, build_parser
for name in COMMANDS:
    build_parser(only=name).format_help()
print(len(COMMANDS))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(len(COMMANDS))
