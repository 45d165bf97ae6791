"""Study storage from a config string, a lock to claim trials, and trial counting.

``optimize.storage``:
  - null / ``memory``: in memory (one process; with n_workers > 1 a journal file in
    the run folder is used instead, since processes cannot share memory)
  - ``sqlite:///path.db`` or any SQLAlchemy URL (``postgresql://user@host/db``)
  - ``journal:path`` or a path ending in ``.journal``/``.log``: Optuna's JournalStorage
    on a JournalFileBackend (append-only file, fine on one machine or NFS)

Exact trial totals: a worker claims a trial by counting the study's trials and
asking for a new one under a lock, so ``n_trials`` is never overshot however many
workers share the study. The lock is a file lock beside sqlite/journal files, a
PostgreSQL advisory lock for postgres URLs; for other servers a trial created past
the target is marked surplus (FAIL + ``aio_surplus``) and not counted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import optuna
import structlog
from optuna.trial import TrialState

from aio.errors import ConfigError

log = structlog.get_logger(__name__)

WORKER_ATTR = "aio_worker"
SURPLUS_ATTR = "aio_surplus"
STALE_ATTR = "aio_stale"


@dataclass(frozen=True)
class StorageSpec:
    kind: str  # memory | journal | sqlite | rdb
    url: str | None = None  # SQLAlchemy URL (sqlite/rdb)
    path: str | None = None  # file (journal/sqlite)

    @property
    def label(self) -> str:
        if self.kind == "memory":
            return "memory"
        if self.kind == "journal":
            return f"journal:{self.path}"
        return _redact(self.url or "")

    @property
    def shareable(self) -> bool:
        return self.kind != "memory"


def _redact(url: str) -> str:
    """Never write a database password into logs or metrics."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def parse_storage(value: str | None, run_dir: Path | None = None) -> StorageSpec:
    if value is None or str(value).strip().lower() in ("", "memory", "inmemory", "in-memory", "none", "null"):
        return StorageSpec("memory")
    v = str(value).strip()
    if v.startswith("journal:"):
        path = v[len("journal:"):]
        if path.startswith("///"):
            path = path[2:]
        return StorageSpec("journal", path=str(Path(path).expanduser().resolve()))
    if v.endswith((".journal", ".log")) and "://" not in v:
        return StorageSpec("journal", path=str(Path(v).expanduser().resolve()))
    if v.startswith("sqlite:"):
        rest = v[len("sqlite:///"):] if v.startswith("sqlite:///") else None
        if not rest:
            raise ConfigError(f"config key optimize.storage={v!r}: use sqlite:///relative/file.db or sqlite:////abs/file.db")
        path = Path(rest).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return StorageSpec("sqlite", url=f"sqlite:///{path}", path=str(path))
    if "://" in v:
        return StorageSpec("rdb", url=v)
    raise ConfigError(
        f"config key optimize.storage={v!r} is not a storage: use null (in memory), sqlite:///file.db, "
        f"journal:file.journal (or a path ending in .journal) or a SQLAlchemy URL such as postgresql://host/db"
    )


def open_storage(spec: StorageSpec, heartbeat_s: int | None = None) -> Any:
    if spec.kind == "memory":
        return optuna.storages.InMemoryStorage()
    if spec.kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
        # Open-lock (fcntl-free, works on NFS) instead of the default symlink lock.
        return optuna.storages.JournalStorage(JournalFileBackend(spec.path, lock_obj=JournalFileOpenLock(spec.path)))
    engine_kwargs: dict[str, Any] = {}
    if spec.kind == "sqlite":
        # several processes write one file: wait for the write lock instead of failing
        engine_kwargs["connect_args"] = {"timeout": 120}
    kw: dict[str, Any] = {}
    if heartbeat_s:
        kw = {"heartbeat_interval": int(heartbeat_s), "grace_period": int(heartbeat_s) * 2}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            return optuna.storages.RDBStorage(spec.url, engine_kwargs=engine_kwargs, **kw)
    except ImportError as exc:
        raise ConfigError(f"optimize.storage={spec.label}: the database driver is missing ({exc}); install it "
                          f"(e.g. pip install psycopg2-binary for postgresql)") from None


# -- claiming trials ----------------------------------------------------------------------

_THREAD_LOCKS: dict[str, threading.Lock] = {}


@contextlib.contextmanager
def claim_lock(spec: StorageSpec, study: str) -> Iterator[bool]:
    """Held while counting and creating a trial; yields whether it is exclusive."""
    if spec.kind in ("journal", "sqlite"):
        lock_path = f"{spec.path}.{zlib.crc32(study.encode()):08x}.lock"
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return
    if spec.kind == "rdb" and (spec.url or "").startswith(("postgresql", "postgres")):
        from sqlalchemy import create_engine, text

        key = zlib.crc32(study.encode()) & 0x7FFFFFFF
        engine = create_engine(spec.url)
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield True
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        engine.dispose()
        return
    if spec.kind == "memory":
        lock = _THREAD_LOCKS.setdefault(study, threading.Lock())
        with lock:
            yield True
        return
    yield False


def worker_id() -> str:
    import psutil

    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{psutil.Process(pid).create_time():.3f}"


def _alive(owner: str) -> bool | None:
    """Whether the worker that owns a trial still runs; None: not on this machine."""
    import psutil

    try:
        host, pid, created = owner.rsplit(":", 2)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        return abs(psutil.Process(int(pid)).create_time() - float(created)) < 0.01
    except (psutil.NoSuchProcess, ValueError):
        return False


def fail_stale(study: optuna.Study) -> int:
    """Mark RUNNING trials whose worker died (same machine) as FAIL; RDB storages with a
    heartbeat also fail trials whose heartbeat stopped (any machine)."""
    n = 0
    storage = study._storage
    try:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        if is_heartbeat_enabled(storage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
    except ImportError:  # pragma: no cover - private helper moved
        pass
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(WORKER_ATTR)
        if owner and _alive(owner) is False:
            storage.set_trial_system_attr(t._trial_id, STALE_ATTR, True)
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                n += 1
    if n:
        log.warning("interrupted trials marked failed", study=study.study_name, trials=n)
    return n


def counted(study: optuna.Study, count_failed: bool = True, exclusive: bool = True) -> int:
    """Trials that count toward the target: COMPLETE, PRUNED, RUNNING (+FAIL)."""
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING]
    storage, sid = study._storage, study._study_id
    if isinstance(storage, optuna.storages.RDBStorage) and exclusive:
        return _rdb_count(storage, sid, states + ([TrialState.FAIL] if count_failed else []))
    n = storage.get_n_trials(sid, tuple(states))
    if count_failed:
        fails = storage.get_all_trials(sid, deepcopy=False, states=(TrialState.FAIL,))
        n += sum(1 for t in fails if not t.system_attrs.get(SURPLUS_ATTR))
    return n


def is_surplus(study: optuna.Study, trial_number: int, target: int, count_failed: bool) -> bool:
    """Without a lock: is the trial just created beyond the target? (lowest numbers win)"""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.FAIL)
    before = 0
    for t in study._storage.get_all_trials(study._study_id, deepcopy=False, states=states):
        if t.number >= trial_number or t.system_attrs.get(SURPLUS_ATTR):
            continue
        if t.state == TrialState.FAIL and not count_failed:
            continue
        before += 1
    return before >= target


def _rdb_count(storage: Any, study_id: int, states: list[TrialState]) -> int:
    """One COUNT query (get_n_trials would load every trial of the study)."""
    from optuna.storages._rdb import models

    session = storage.scoped_session()
    try:
        return (
            session.query(models.TrialModel)
            .filter(models.TrialModel.study_id == study_id, models.TrialModel.state.in_(states))
            .count()
        )
    finally:
        session.close()
