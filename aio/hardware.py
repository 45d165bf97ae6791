"""What machine a run is on, what training settings suit it, and how busy it was.

    info = detect()                       # cores, RAM, GPU name/VRAM/bf16
    choice = choose(info, trainer_cfg)    # accelerator, precision, batch size, loader workers
    with UtilizationMonitor(1.0) as mon:  # CPU/RAM (and GPU) sampled in a thread
        ...
    mon.summary()

Every choice records why it was made (``choice.reasons``); a value set in the
config always wins over the automatic one.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)

GIB = 2**30


@dataclass(frozen=True)
class HardwareInfo:
    cpu_logical: int
    cpu_physical: int
    ram_gb: float
    ram_available_gb: float
    gpu_count: int = 0
    gpu_name: str | None = None
    gpu_vram_gb: float | None = None
    gpu_bf16: bool = False
    gpu_capability: str | None = None
    torch: str | None = None
    platform: str = ""
    load_1m: float | None = None  # runnable processes (1-minute load average) when detected

    @property
    def has_gpu(self) -> bool:
        return self.gpu_count > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect(gpu: bool = True) -> HardwareInfo:
    """Cores, memory and the first CUDA GPU (name, VRAM, bf16 support) of this machine.

    ``gpu=False`` skips the GPU probe (it imports torch, seconds on a cold start).
    """
    import psutil

    vm = psutil.virtual_memory()
    logical = os.cpu_count() or 1
    try:
        load = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        load = None
    physical = psutil.cpu_count(logical=False) or logical
    gpu: dict[str, Any] = {}
    torch_version = None
    try:
        if not gpu:
            raise _Skip
        import torch

        torch_version = torch.__version__
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            gpu = {
                "gpu_count": torch.cuda.device_count(),
                "gpu_name": p.name,
                "gpu_vram_gb": round(p.total_memory / GIB, 1),
                "gpu_bf16": bool(torch.cuda.is_bf16_supported()),
                "gpu_capability": f"{p.major}.{p.minor}",
            }
    except _Skip:
        pass
    except Exception as exc:  # a broken CUDA install must not stop a CPU run
        log.warning("gpu detection failed", error=str(exc))
    return HardwareInfo(
        cpu_logical=logical,
        cpu_physical=physical,
        ram_gb=round(vm.total / GIB, 1),
        ram_available_gb=round(vm.available / GIB, 1),
        torch=torch_version,
        platform=platform.platform(),
        load_1m=load,
        **gpu,
    )


class _Skip(Exception):
    pass


def manifest_info() -> dict[str, Any]:
    """The machine for a run's manifest. The GPU is probed only when the run itself loaded
    torch (a run that never imported it used no GPU, and importing it costs seconds)."""
    import sys

    info = detect(gpu="torch" in sys.modules).as_dict()
    info["gpu_probed"] = "torch" in sys.modules
    info["python"] = platform.python_version()
    return info


@dataclass
class HardwareChoice:
    accelerator: str
    devices: Any
    precision: str
    batch_size: int
    num_workers: int
    torch_threads: int
    reasons: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose(
    info: HardwareInfo,
    accelerator: str = "auto",
    devices: Any = "auto",
    precision: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    torch_threads: int | None = None,
    rows: int | None = None,
) -> HardwareChoice:
    """Training settings for ``info``; explicit arguments are kept as given.

    - accelerator: the GPU when there is one, else the CPU;
    - precision: bf16-mixed on a GPU that supports bf16, 16-mixed on older GPUs,
      32-true on the CPU (CPU autocast is slower than fp32 for small conv nets);
    - batch size: 64 on the CPU; on a GPU 256 below 16 GiB of VRAM, 512 above
      (the chart model is small: memory is not the limit, steps per epoch are);
      never more than a quarter of ``rows`` so an epoch has several steps;
    - loader workers: 0 on the CPU with <= 4 cores (a worker would take a core from
      the training itself), else half the cores (at most 8);
    - torch threads: the physical cores not already busy (1-minute load average): on a
      shared machine OpenMP threads that wait for a busy core make every step many
      times slower than a single thread.
    """
    reasons: dict[str, str] = {}
    if accelerator == "auto":
        accelerator = "gpu" if info.has_gpu else "cpu"
        reasons["accelerator"] = f"auto: {'GPU ' + str(info.gpu_name) if info.has_gpu else 'no CUDA GPU'}"
    else:
        reasons["accelerator"] = "config"
    on_gpu = accelerator in ("gpu", "cuda")
    if on_gpu and not info.has_gpu:
        from aio.errors import ConfigError

        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no CUDA GPU (torch {info.torch}); "
            "use trainer=cpu or trainer.accelerator=auto"
        )
    if precision == "auto":
        if on_gpu:
            precision = "bf16-mixed" if info.gpu_bf16 else "16-mixed"
            reasons["precision"] = f"auto: GPU {'supports' if info.gpu_bf16 else 'lacks'} bf16"
        else:
            precision = "32-true"
            reasons["precision"] = "auto: CPU trains in fp32"
    else:
        reasons["precision"] = "config"
        if not on_gpu and precision in ("16-mixed", "16-true"):
            from aio.errors import ConfigError

            raise ConfigError(f"trainer.precision={precision} needs a GPU; on the CPU use 32-true or bf16-mixed")
        if on_gpu and precision.startswith("bf16") and not info.gpu_bf16:
            from aio.errors import ConfigError

            raise ConfigError(f"trainer.precision={precision}: GPU {info.gpu_name} has no bf16 support; use 16-mixed")
    if batch_size is None:
        if on_gpu:
            batch_size = 512 if (info.gpu_vram_gb or 0) >= 16 else 256
            reasons["batch_size"] = f"auto: GPU with {info.gpu_vram_gb} GiB"
        else:
            batch_size = 64
            reasons["batch_size"] = "auto: CPU"
        if rows:
            cap = max(16, rows // 4)
            if batch_size > cap:
                batch_size = cap
                reasons["batch_size"] += f", capped at rows/4 ({rows} rows)"
    else:
        reasons["batch_size"] = "config"
    if num_workers is None:
        if not on_gpu and info.cpu_logical <= 4:
            num_workers = 0
            reasons["num_workers"] = f"auto: {info.cpu_logical} cores, loading in the training process"
        else:
            num_workers = min(8, max(1, info.cpu_logical // 2))
            reasons["num_workers"] = f"auto: half of {info.cpu_logical} cores"
    else:
        reasons["num_workers"] = "config"
    if torch_threads is None:
        torch_threads = max(1, info.cpu_physical)
        reasons["torch_threads"] = f"auto: {info.cpu_physical} physical cores"
        if info.load_1m is not None:
            free = info.cpu_logical - int(round(info.load_1m))
            if free < torch_threads:
                torch_threads = max(1, free)
                reasons["torch_threads"] += f", {info.load_1m} already busy"
    else:
        reasons["torch_threads"] = "config"
    return HardwareChoice(accelerator, devices, precision, int(batch_size), int(num_workers), int(torch_threads), reasons)


# -- utilisation sampling -------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the monitor started
    cpu_pct: float  # system-wide, all cores (100 = every core busy)
    proc_cpu_pct: float  # this process (100 = one core busy)
    ram_pct: float
    rss_gb: float
    gpu_util_pct: float | None = None
    gpu_mem_gb: float | None = None


class UtilizationMonitor:
    """Samples CPU/RAM (and GPU when present) every ``interval_s`` in a daemon thread."""

    def __init__(self, interval_s: float = 1.0, gpu: bool | None = None) -> None:
        import psutil

        self.interval_s = max(0.05, float(interval_s))
        self.samples: list[Sample] = []
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._lock = threading.Lock()
        if gpu is None:
            try:
                import torch

                gpu = torch.cuda.is_available()
            except Exception:
                gpu = False
        self.gpu = bool(gpu)

    def __enter__(self) -> "UtilizationMonitor":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        import psutil

        if self._thread is not None:
            return
        self._t0 = time.perf_counter()
        psutil.cpu_percent(None)  # prime: the first call measures from here
        self._proc.cpu_percent(None)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="aio-utilization", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        self.sample()  # always at least one sample, also for runs shorter than the interval

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> Sample:
        import psutil

        vm = psutil.virtual_memory()
        s = Sample(
            t=round(time.perf_counter() - self._t0, 3),
            cpu_pct=float(psutil.cpu_percent(None)),
            proc_cpu_pct=float(self._proc.cpu_percent(None)),
            ram_pct=float(vm.percent),
            rss_gb=round(self._proc.memory_info().rss / GIB, 3),
        )
        if self.gpu:
            s.gpu_util_pct, s.gpu_mem_gb = _gpu_sample()
        with self._lock:
            self.samples.append(s)
        return s

    def since(self, start: int) -> list[Sample]:
        with self._lock:
            return list(self.samples[start:])

    def summary(self, samples: list[Sample] | None = None) -> dict[str, Any]:
        """mean/max of each quantity over ``samples`` (default: all)."""
        rows = self.since(0) if samples is None else samples
        return summarize(rows)


def summarize(rows: list[Sample]) -> dict[str, Any]:
    out: dict[str, Any] = {"samples": len(rows)}
    if not rows:
        return out
    for key in ("cpu_pct", "proc_cpu_pct", "ram_pct", "rss_gb", "gpu_util_pct", "gpu_mem_gb"):
        vals = [getattr(r, key) for r in rows if getattr(r, key) is not None]
        if vals:
            out[f"{key}_mean"] = round(sum(vals) / len(vals), 3)
            out[f"{key}_max"] = round(max(vals), 3)
    return out


def _gpu_sample() -> tuple[float | None, float | None]:
    try:
        import torch

        mem = round(torch.cuda.memory_allocated() / GIB, 3)
        try:
            util = float(torch.cuda.utilization())  # needs nvidia-ml-py (pynvml)
        except Exception:
            util = None
        return util, mem
    except Exception:
        return None, None
