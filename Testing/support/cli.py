"""The `emim` command line run inside the test process, for tests about what a command says, refuses and writes.

A new `python -m emim` spends 1.5 to 4 s importing torch and MONAI before it reads its first argument; a test
process has them imported already. `emim_in_process` runs the same `emim.cli.main` on the same arguments and returns
what `subprocess.run(..., capture_output=True, text=True)` would. Tests about the process itself (signals, exit
on SIGTERM, torchrun, a command held until links are planted) keep a real child process.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]


def emim_in_process(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`emim ARGS` in this process, in `cwd` (the repository, where `make test` runs): its exit status, stdout and
    stderr."""
    from emim.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    sigterm, here = signal.getsignal(signal.SIGTERM), Path.cwd()
    try:
        os.chdir(cwd)
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                returncode = main(list(args))
            except SystemExit as exit_:  # --help, --version
                returncode = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(here)
        signal.signal(signal.SIGTERM, sigterm)  # main() installs its own
    return subprocess.CompletedProcess(["emim", *args], returncode, stdout.getvalue(), stderr.getvalue())
