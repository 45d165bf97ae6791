"""Study storage from a config string, a lock to claim trials, and trial counting.

``optimize.storage``:
  - null / ``memory``: in memory (one process; with n_workers > 1 a journal file in
    the run folder is used instead, since processes cannot share memory)
  - ``sqlite:///path.db`` or any SQLAlchemy URL (``postgresql://user@host/db``; without a
    driver named, PostgreSQL is reached through psycopg 3, ``postgresql+psycopg://``)
  - ``journal:path`` or a path ending in ``.journal``/``.log``: Optuna's JournalStorage
    on a JournalFileBackend (append-only file, fine on one machine or NFS)

Exact trial totals: a worker claims a trial by counting the study's trials and
asking for a new one under a lock, so ``n_trials`` is never overshot however many
workers share the study. The lock is a file lock beside sqlite/journal files, a
PostgreSQL advisory lock for postgres URLs; for other servers a trial created past
the target is marked surplus (FAIL + ``aio_surplus``) and not counted.

Dead workers: on database storages every running trial beats a heartbeat
(``optimize.heartbeat_s``); a trial silent for two intervals is failed by Optuna's
``fail_stale_trials`` from whichever worker looks next, on any machine (study attribute
``aio_heartbeat_failed.<trial number>``). File storages have no heartbeat: a trial whose worker process
died on this machine is failed instead (``aio_stale``).
"""

from __future__ import annotations

import contextlib
import datetime
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
HEARTBEAT_ATTR = "aio_heartbeat_failed"
# Advisory-lock acquisitions by this process, per study (checked by the tests, logged at debug).
PG_LOCKS_TAKEN: dict[str, int] = {}


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
        scheme, rest = v.split("://", 1)
        if scheme in ("postgresql", "postgres"):
            # SQLAlchemy's default PostgreSQL driver is psycopg2; the project ships psycopg 3.
            v = f"postgresql+psycopg://{rest}"
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
    else:
        engine_kwargs["pool_pre_ping"] = True  # a server restart or an idle timeout must not fail a trial
    kw: dict[str, Any] = {}
    if heartbeat_s:
        kw = {"heartbeat_interval": int(heartbeat_s), "grace_period": int(heartbeat_s) * 2}
        import inspect

        params = inspect.signature(optuna.storages.RDBStorage).parameters
        name = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else "failed_trial_callback"
        kw[name] = on_heartbeat_stale
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            return optuna.storages.RDBStorage(spec.url, engine_kwargs=engine_kwargs, **kw)
    except ImportError as exc:
        raise ConfigError(f"optimize.storage={spec.label}: the database driver is missing ({exc}); install it "
                          f"(e.g. pip install 'psycopg[binary]' for postgresql+psycopg://)") from None


def on_heartbeat_stale(study: optuna.Study, trial: Any) -> None:
    """Optuna failed ``trial`` because its heartbeat stopped (its worker died or hung).

    Recorded on the study (a finished trial takes no attributes): ``aio_heartbeat_failed.<number>``.
    """
    study._storage.set_study_system_attr(study._study_id, f"{HEARTBEAT_ATTR}.{trial.number}",
                                         trial.system_attrs.get(WORKER_ATTR) or "")
    log.warning("trial failed: its worker stopped beating", study=study.study_name, trial=trial.number,
                worker=trial.system_attrs.get(WORKER_ATTR))


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
        from sqlalchemy import text

        key = advisory_key(study)
        # A session-level lock on its own autocommit connection: no transaction stays open
        # while it is held, and a worker that dies releases it with its connection.
        with _lock_engine(spec.url).connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            PG_LOCKS_TAKEN[study] = PG_LOCKS_TAKEN.get(study, 0) + 1
            try:
                yield True
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    if spec.kind == "memory":
        lock = _THREAD_LOCKS.setdefault(study, threading.Lock())
        with lock:
            yield True
        return
    yield False


def advisory_key(study: str) -> int:
    """The PostgreSQL advisory-lock key of a study (``pg_locks.objid`` while held)."""
    return zlib.crc32(study.encode()) & 0x7FFFFFFF


_ENGINES: dict[str, Any] = {}


def _lock_engine(url: str) -> Any:
    """One small engine per URL and process (a new engine per claim would reconnect per trial)."""
    engine = _ENGINES.get(url)
    if engine is None:
        from sqlalchemy import create_engine

        engine = _ENGINES[url] = create_engine(url, pool_size=1, max_overflow=1, pool_pre_ping=True)
    return engine


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


def heartbeat_enabled(storage: Any) -> bool:
    try:
        from optuna.storages._heartbeat import is_heartbeat_enabled
    except ImportError:  # pragma: no cover - private helper moved
        return False
    return is_heartbeat_enabled(storage)


def fail_stale(study: optuna.Study) -> int:
    """Fail RUNNING trials whose worker is gone; returns how many this call failed.

    With a heartbeat (database storages) Optuna fails the trials whose heartbeat stopped,
    wherever their worker ran (:func:`on_heartbeat_stale` marks them). A trial that never
    beat (its worker died between claiming it and the first beat) is failed when its
    worker process is dead on this machine, or, from another machine, once it started
    longer ago than the grace period. Without a heartbeat (file storages) only the
    process test applies.
    """
    storage, sid = study._storage, study._study_id
    running = storage.get_all_trials(sid, deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return 0
    grace = None
    n = 0
    if heartbeat_enabled(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # logged by on_heartbeat_stale
        left = {t._trial_id for t in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.RUNNING,))}
        rdb = rdb_backend(storage)
        unbeaten = _unbeaten(rdb, sid) if rdb is not None else set()
        running = [t for t in running if t._trial_id in left and t._trial_id in unbeaten]
        interval = storage.get_heartbeat_interval()
        grace = (getattr(rdb, "grace_period", None) or 2 * interval) if interval else None
    now = datetime.datetime.now()
    for t in running:
        owner = t.system_attrs.get(WORKER_ATTR)
        alive = _alive(owner) if owner else None
        late = (grace is not None and t.datetime_start is not None
                and (now - t.datetime_start.replace(tzinfo=None)).total_seconds() > grace)
        if alive is False or (alive is None and late):
            storage.set_trial_system_attr(t._trial_id, STALE_ATTR, True)
            try:
                if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                    n += 1
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another worker failed it first
    if n:
        log.warning("interrupted trials marked failed", study=study.study_name, trials=n)
    return n


def _unbeaten(storage: Any, study_id: int) -> set[int]:
    """RUNNING trials of the study that have no heartbeat yet."""
    from optuna.storages._rdb import models

    session = storage.scoped_session()
    try:
        rows = (
            session.query(models.TrialModel.trial_id)
            .outerjoin(models.TrialHeartbeatModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
            .filter(models.TrialModel.study_id == study_id, models.TrialModel.state == TrialState.RUNNING,
                    models.TrialHeartbeatModel.trial_id.is_(None))
            .all()
        )
        return {r[0] for r in rows}
    finally:
        session.close()


def rdb_backend(storage: Any) -> Any | None:
    """The RDBStorage under Optuna's cache wrapper (``study._storage``), or None."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def running_trials(study: optuna.Study) -> int:
    return study._storage.get_n_trials(study._study_id, (TrialState.RUNNING,))


def counted(study: optuna.Study, count_failed: bool = True, exclusive: bool = True) -> int:
    """Trials that count toward the target: COMPLETE, PRUNED, RUNNING (+FAIL)."""
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING]
    storage, sid = study._storage, study._study_id
    rdb = rdb_backend(storage)
    if rdb is not None and exclusive:
        return _rdb_count(rdb, sid, states + ([TrialState.FAIL] if count_failed else []))
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
