"""Hardware detection, the automatic training settings, utilisation sampling."""

from __future__ import annotations

import os
import time

import psutil
import pytest
import torch

from aio.errors import ConfigError
from aio.hardware import HardwareInfo, UtilizationMonitor, choose, detect

CPU2 = HardwareInfo(cpu_logical=2, cpu_physical=2, ram_gb=8.0, ram_available_gb=6.0)
H100 = HardwareInfo(cpu_logical=16, cpu_physical=16, ram_gb=128.0, ram_available_gb=120.0, gpu_count=1,
                    gpu_name="NVIDIA H100", gpu_vram_gb=79.2, gpu_bf16=True, gpu_capability="9.0")
T4 = HardwareInfo(cpu_logical=8, cpu_physical=4, ram_gb=32.0, ram_available_gb=30.0, gpu_count=1,
                  gpu_name="Tesla T4", gpu_vram_gb=14.6, gpu_bf16=False, gpu_capability="7.5")


def test_detect_reports_this_machine():
    info = detect()
    assert info.cpu_logical == os.cpu_count()
    assert 1 <= info.cpu_physical <= info.cpu_logical
    assert info.ram_gb == pytest.approx(psutil.virtual_memory().total / 2**30, abs=0.1)
    assert info.has_gpu == torch.cuda.is_available()
    if info.has_gpu:
        assert info.gpu_name and info.gpu_vram_gb > 0
    else:
        assert info.gpu_name is None and info.gpu_bf16 is False


def test_choice_on_a_small_cpu():
    c = choose(CPU2)
    assert (c.accelerator, c.precision, c.batch_size, c.num_workers, c.torch_threads) == ("cpu", "32-true", 64, 0, 2)
    assert c.reasons["precision"].startswith("auto")
    # a machine already busy with other work: one thread instead of two waiting for each other
    busy = HardwareInfo(cpu_logical=2, cpu_physical=2, ram_gb=8.0, ram_available_gb=6.0, load_1m=3.5)
    assert choose(busy).torch_threads == 1 and "busy" in choose(busy).reasons["torch_threads"]


def test_choice_on_gpus_follows_bf16_and_vram():
    h = choose(H100)
    assert (h.accelerator, h.precision, h.batch_size, h.num_workers) == ("gpu", "bf16-mixed", 512, 8)
    t = choose(T4)
    assert (t.precision, t.batch_size, t.num_workers) == ("16-mixed", 256, 4)
    assert choose(H100, rows=400).batch_size == 100  # an epoch keeps several steps


def test_config_values_win_and_impossible_ones_are_refused():
    c = choose(H100, precision="32-true", batch_size=32, num_workers=2, torch_threads=3)
    assert (c.precision, c.batch_size, c.num_workers, c.torch_threads) == ("32-true", 32, 2, 3)
    assert set(c.reasons.values()) >= {"config"}
    assert choose(H100, accelerator="cpu").precision == "32-true"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        choose(CPU2, accelerator="gpu")
    with pytest.raises(ConfigError, match="needs a GPU"):
        choose(CPU2, precision="16-mixed")
    with pytest.raises(ConfigError, match="no bf16"):
        choose(T4, precision="bf16-mixed")


def test_utilization_monitor_samples_while_busy():
    with UtilizationMonitor(0.05, gpu=False) as mon:
        end = time.perf_counter() + 0.4
        x = 0
        while time.perf_counter() < end:  # keep one core busy
            x += 1
    s = mon.summary()
    assert s["samples"] >= 4
    assert 0 <= s["cpu_pct_mean"] <= 100 and s["proc_cpu_pct_max"] > 20
    assert s["rss_gb_max"] == pytest.approx(psutil.Process().memory_info().rss / 2**30, rel=0.5)
    assert "gpu_util_pct_mean" not in s
    assert [r.t for r in mon.samples] == sorted(r.t for r in mon.samples)
