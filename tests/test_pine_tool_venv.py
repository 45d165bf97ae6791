"""The Pine tool venv (pynescript, apart from Hydra's antlr4) is created once, safely, when
several processes ask for it at the same moment, and a creation cut short is redone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_two_processes_asking_at_once_get_one_working_venv(tmp_path):
    venv = tmp_path / "tools" / "pine-venv"
    code = ("import sys; from aio.pine.check import tool_python; "
            f"print(tool_python(__import__('pathlib').Path({str(venv)!r})))")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert {o[0].strip() for o in outs} == {str(venv / "bin" / "python")}
    assert (venv / ".aio-ready").is_file()
    ok = subprocess.run([str(venv / "bin" / "python"), "-c", "import pynescript"], capture_output=True)
    assert ok.returncode == 0, ok.stderr

    # a creation killed mid-install leaves a venv without its marker (and here without
    # pynescript): the next use rebuilds it instead of running a broken parser
    (venv / ".aio-ready").unlink()
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", "pynescript"], check=True)
    from aio.pine.check import tool_python

    py = tool_python(venv)
    assert (venv / ".aio-ready").is_file()
    assert subprocess.run([str(py), "-c", "import pynescript"], capture_output=True).returncode == 0
