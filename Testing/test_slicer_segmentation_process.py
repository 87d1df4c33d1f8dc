"""The engine runner with real child processes: JSON progress lines, log text, failures and tree-killing cancel."""

from __future__ import annotations

import sys
import time

import psutil
import pytest

import support.slicer_scene  # noqa: F401  (puts the module folder on sys.path)
from EMIMCommonLib.errors import EMIMError
from EMIMCommonLib.job import CANCELLED, FAILED, EngineJob
from EMIMCommonLib.process import EngineProcess, engine_environment, parse_line

EMITTER = """
import json, sys
print(json.dumps({"event": "start", "command": "segment", "total": 4}), flush=True)
for step in range(1, 5):
    print(json.dumps({"event": "progress", "step": step, "total": 4, "percent": 25.0 * step}), flush=True)
print("plain text on stdout", flush=True)
print("a warning for people", file=sys.stderr, flush=True)
print(json.dumps({"event": "warning", "message": "CUDA not available, running on CPU"}), flush=True)
print(json.dumps({"event": "output", "path": "/tmp/x.nii.gz", "kind": "label", "case": "c"}), flush=True)
print(json.dumps({"event": "done", "outputs": ["/tmp/x.nii.gz"]}), flush=True)
"""

SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_parse_line_json_and_text():
    assert parse_line('{"event": "progress", "percent": 5}\n') == {"event": "progress", "percent": 5}
    assert parse_line("[1, 2]") == {"event": "log", "message": "[1, 2]"}
    assert parse_line("hello") == {"event": "log", "message": "hello"}


def test_events_from_a_real_child_reach_the_callbacks(tmp_path):
    percents, logs = [], []
    job = EngineJob(EngineProcess([sys.executable, "-c", EMITTER]), tmp_path / "work",
                    finish=lambda outputs, done: (outputs, done), log=logs.append, progress=percents.append)
    outputs, done = job.wait(interval_s=0.02)
    assert percents == [25.0, 50.0, 75.0, 100.0, 100.0]
    assert [o["path"] for o in outputs] == ["/tmp/x.nii.gz"] and done["outputs"] == ["/tmp/x.nii.gz"]
    assert job.warnings == ["CUDA not available, running on CPU"]
    assert "plain text on stdout" in logs and "a warning for people" in logs


def test_failure_message_from_error_event_and_exit_code(tmp_path):
    script = 'import json; print(json.dumps({"event": "error", "message": "model folder broken"})); raise SystemExit(2)'
    job = EngineJob(EngineProcess([sys.executable, "-c", script]), tmp_path, finish=lambda o, d: None)
    with pytest.raises(EMIMError, match="model folder broken"):
        job.wait(interval_s=0.02)
    assert job.state == FAILED
    silent = EngineJob(EngineProcess([sys.executable, "-c", "raise SystemExit(3)"]), tmp_path, finish=lambda o, d: None)
    with pytest.raises(EMIMError, match="exit code 3"):
        silent.wait(interval_s=0.02)


def test_cancel_kills_the_whole_process_tree(tmp_path):
    process = EngineProcess([sys.executable, "-c", SPAWNER])
    job = EngineJob(process, tmp_path / "work", finish=lambda o, d: None)
    grandchild_pid = None
    deadline = time.monotonic() + 20
    while grandchild_pid is None and time.monotonic() < deadline:
        job.poll()
        children = psutil.Process(process.pid).children()
        grandchild_pid = children[0].pid if children else None
        time.sleep(0.05)
    assert grandchild_pid is not None and psutil.pid_exists(grandchild_pid)
    job.cancel()
    while not job.poll():
        time.sleep(0.02)
    assert job.state == CANCELLED
    assert not psutil.pid_exists(process.pid)
    gone = not psutil.pid_exists(grandchild_pid) or psutil.Process(grandchild_pid).status() == psutil.STATUS_ZOMBIE
    assert gone


def test_engine_environment_puts_the_engine_package_on_the_path():
    from pathlib import Path

    env = engine_environment()
    first = env["PYTHONPATH"].split(":")[0]
    assert (Path(first) / "emim" / "__init__.py").is_file()
