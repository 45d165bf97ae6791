"""Progress bars and logs: bars on a terminal never cut a log line; the console stays
short while log.jsonl keeps the debug lines."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")

SCRIPT = """
import time, structlog
from pathlib import Path
from aio.logs import setup_logging
from aio import progress
setup_logging(Path({run_dir!r}), "INFO")
log = structlog.get_logger("aio.test")
with progress.task("search trials", total=40, unit="trial") as p:
    for i in range(40):
        time.sleep(0.01)
        p.advance()
        if i % 4 == 0:
            log.info("stage line", i=i, payload="x" * 60)
        log.debug("trial line", i=i)
for f in progress.track(range(5), "training folds", unit="fold"):
    log.info("fold line", fold=f)
print("done", flush=True)
"""


def test_bars_on_a_terminal_keep_clear_of_log_lines(tmp_path):
    # a real pseudo-terminal: rich draws its live bars only on one
    main, child = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "160", "TERM": "xterm"}
    env.pop("AIO_PROGRESS", None)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(run_dir=str(tmp_path))], stdin=child,
                            stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(60) == 0
    text = out.decode("utf-8", "replace")
    assert "search trials" in text and "ETA" in text  # the bar was drawn (rich, with an ETA)
    lines = [ANSI.sub("", ln).strip() for ln in text.split("\n")]
    stage = [ln for ln in lines if "stage line" in ln]
    assert len(stage) == 10
    for ln in stage:  # each log line whole, on its own line: no bar drawn into it
        assert re.search(r"stage line\s+\[aio\.test\] i=\d+ payload=x{60}$", ln), ln
    assert sum("fold line" in ln for ln in lines) == 5
    assert not any("trial line" in ln for ln in lines)  # debug: log.jsonl only
    assert not any("it/s" in ln for ln in lines)  # no tqdm
    recs = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sum(r["event"] == "trial line" for r in recs) == 40
    assert {r["task"] for r in recs if r["event"] == "progress done"} == {"search trials", "training folds"}


def test_console_stays_short_and_log_jsonl_keeps_debug(tmp_path, capsys):
    from aio.logs import setup_logging

    setup_logging(tmp_path, "INFO")
    log = structlog.get_logger("aio.train.loop")
    log.debug("epoch done", epoch=3)
    log.info("fold trained", fold=1)
    err = capsys.readouterr().err
    assert "fold trained" in err and "epoch done" not in err
    events = [json.loads(x)["event"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert events == ["epoch done", "fold trained"]
    setup_logging(tmp_path / "dbg", "DEBUG")
    structlog.get_logger("aio.train.loop").debug("epoch done", epoch=4)
    assert "epoch done" in capsys.readouterr().err


def test_bars_off_the_terminal_only_count(monkeypatch):
    from aio import progress

    monkeypatch.setenv("AIO_PROGRESS", "0")
    with progress.task("x", total=3) as t:
        t.advance(2)
        t.update(1)
    assert t.n == 3 and progress._progress is None
    b = progress.bar(total=5, initial=2, desc="hours", unit="h", leave=False, mininterval=0.5)
    b.n = 4
    b.refresh()
    b.close()
    assert b.n == 4


@pytest.mark.slow
def test_a_run_logs_one_line_per_stage(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from _report_runs import SEARCH, run_pipeline

    run_pipeline(tmp_path / "run", SEARCH)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert not any("trials counted" in ln or "study started" in ln for ln in err)
    assert len(err) <= 14, "\n".join(err)
    recs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert sum(r["event"] == "trials counted" for r in recs) >= 16


def test_lightning_draws_its_epochs_with_an_aio_bar_not_tqdm(monkeypatch, tmp_path):
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from aio import progress
    from aio.logs import setup_logging

    monkeypatch.setenv("AIO_PROGRESS", "0")
    setup_logging(tmp_path, "INFO")

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.mse_loss(self.lin(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(TensorDataset(torch.randn(32, 2), torch.randn(32, 1)), batch_size=8)
    bar = progress.lightning_bar()
    trainer = L.Trainer(max_epochs=2, callbacks=[bar], logger=False, enable_checkpointing=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(Tiny(), data)
    assert trainer.progress_bar_callback is bar  # Lightning took ours instead of its tqdm bar
    recs = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    done = [r for r in recs if r["event"] == "progress done"]
    assert [(r["task"], r["done"], r["total"]) for r in done] == [("epoch 1", 4, 4), ("epoch 2", 4, 4)]
