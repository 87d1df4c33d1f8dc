"""Run an engine command as a child process and turn its `--progress json` lines into events.

A reader thread per pipe puts parsed events on a queue; the caller drains it with `poll()` from its own thread
(Slicer's GUI timer, or the blocking `wait()` loop), so no MRML or Qt object is ever touched off the main thread.
Lines that are not JSON become `{"event": "log"}` events. Cancel kills the whole process tree (the engine may
start data-loader workers), children first, with psutil (imported there: a stock Slicer lacks it until the
installer has added it, and the module files must load without it).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

Event = dict


def python_executable() -> str:
    """The interpreter that runs the engine: PythonSlicer inside Slicer (Slicer's own binary is not Python)."""
    if os.path.basename(sys.executable).lower().startswith(("slicer", "slicerapp")):
        import shutil

        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def engine_environment() -> dict[str, str]:
    """Environment for the child: the folder holding the `emim` package first on PYTHONPATH, unbuffered output."""
    import importlib.util

    env = dict(os.environ)
    spec = importlib.util.find_spec("emim")  # locates the package without importing it
    if spec is not None and spec.origin:
        package_parent = str(Path(spec.origin).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def parse_line(line: str) -> Event:
    """One stdout line -> event dict; anything that is not a JSON object with an `event` key is log text."""
    text = line.rstrip("\r\n")
    try:
        value = json.loads(text)
    except ValueError:
        return {"event": "log", "message": text}
    if isinstance(value, dict) and "event" in value:
        return value
    return {"event": "log", "message": text}


JSON_PROGRESS = ("--progress", "json")


def engine_command(subcommand: str, arguments: Sequence[str], machine_output: Sequence[str] = JSON_PROGRESS
                   ) -> list[str]:
    """`python -m emim SUBCOMMAND ... --progress json` with the interpreter that can import the engine
    (`machine_output` is the option that makes the command speak JSON events: `--json` for check-data)."""
    return [python_executable(), "-m", "emim", subcommand, *arguments, *machine_output]


class EngineProcess:
    """One running child process; `poll()` returns the events received since the last call."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.command = list(command)
        self._events: queue.Queue[Event] = queue.Queue()
        self._popen = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                       bufsize=1, env=env if env is not None else engine_environment(), cwd=cwd)
        self.pid = self._popen.pid
        self.cancelled = False
        self._readers = [threading.Thread(target=self._read, args=(self._popen.stdout, parse_line), daemon=True),
                         threading.Thread(target=self._read, args=(self._popen.stderr, _stderr_event), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, parse: Callable[[str], Event]) -> None:
        for line in stream:
            if line.strip():
                self._events.put(parse(line))
        stream.close()

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def finished(self) -> bool:
        """True once the child has exited and both pipes are fully read (no event can arrive later)."""
        return self._popen.poll() is not None and not any(r.is_alive() for r in self._readers)

    def poll(self) -> list[Event]:
        """All events received so far that were not returned before; never blocks."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait(self, interval_s: float = 0.1) -> Iterator[Event]:
        """Blocking mode for scripts: yield events until the child has exited."""
        while not self.finished():
            yield from self.poll()
            time.sleep(interval_s)
        yield from self.poll()

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM to it alone; the engine saves a checkpoint and exits)."""
        if self._popen.poll() is None:
            self._popen.terminate()

    def cancel(self, timeout_s: float = 5.0) -> None:
        """Kill the child and every process it started; waits until they are gone."""
        import psutil

        self.cancelled = True
        try:
            parent = psutil.Process(self.pid)
            processes = parent.children(recursive=True) + [parent]
        except psutil.NoSuchProcess:
            processes = []
        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=timeout_s)
        self._popen.wait(timeout=timeout_s)


def _stderr_event(line: str) -> Event:
    return {"event": "log", "message": line.rstrip("\r\n"), "stream": "stderr"}
