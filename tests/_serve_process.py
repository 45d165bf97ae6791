"""`python -m aio task=serve` as a subprocess on 127.0.0.1 and a free port, for the serving
tests and benchmarks/serve.py: started, waited for until healthy, and stopped with its workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx

from tests._redis_server import free_port

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def serving(run_dir: Path, lib: Path, out: Path, *overrides: str, timeout_s: float = 400) -> Iterator[str]:
    """The server's base URL while it runs; its output is in ``out/server.log``."""
    port = free_port()
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "aio", "task=serve", f"query.run_dir={run_dir}", f"store.path={lib}",
                             f"serve.port={port}", *overrides, f"hydra.run.dir={out}"],
                            cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: LitServe's workers stop with it
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s  # workers import torch and load the model (slow on a busy box)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {(out / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError(f"server not healthy: {(out / 'server.log').read_text()[-3000:]}")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # workers that ignored SIGTERM
        except ProcessLookupError:
            pass
        log.close()
