"""Live control over Redis: signed commands in, acknowledgements with the resulting state out.

Command entry on ``live.commands`` (all values strings)::

    id    unique id chosen by the sender (a command id is applied at most once)
    cmd   pause | resume | flatten | status | set | reload
    args  JSON object: set -> {"params": {"length": 21}}; reload -> {"strategy_id": "...",
          "library": "<LanceDB folder>" (optional)}; others -> {}
    ts    sender's UTC time, seconds since the epoch (float)
    sig   hex HMAC-SHA256 of "id\\ncmd\\nargs\\nts" with the shared secret ``live.secret``

Unsigned, wrongly signed, stale (older than ``live.max_age_s`` or from the future),
duplicate, malformed and unknown commands are refused: the reply says why, the
refusal is logged and journaled. ``status`` is answered at once; the others take
effect at the next bar close, where they are journaled before the decision, and are
answered then with the resulting state. Reply entry on ``live.replies``::

    id, status (applied | answered | rejected), reason, bar, state (JSON)

``pause`` stops new orders (the open position keeps its exits); ``flatten`` closes the
position at the next bar's open and pauses; ``resume`` lifts the pause; ``set`` changes
strategy parameters (checked against the strategy's space and relations); ``reload``
swaps in a strategy from the library whose order slots are the running one's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import structlog

from aio.errors import AioError, ConfigError

log = structlog.get_logger(__name__)

COMMANDS = ("pause", "resume", "flatten", "status", "set", "reload")


class CommandRejected(AioError):
    pass


def signing_text(cid: str, cmd: str, args: str, ts: str) -> bytes:
    return f"{cid}\n{cmd}\n{args}\n{ts}".encode()


def sign(secret: str, cid: str, cmd: str, args: str, ts: str) -> str:
    return hmac.new(secret.encode(), signing_text(cid, cmd, args, ts), hashlib.sha256).hexdigest()


def make_command(secret: str, cmd: str, args: dict[str, Any] | None = None, *, cid: str | None = None,
                 ts: float | None = None) -> dict[str, str]:
    cid = cid or uuid.uuid4().hex
    a = json.dumps(args or {}, sort_keys=True)
    t = repr(float(time.time() if ts is None else ts))
    return {"id": cid, "cmd": cmd, "args": a, "ts": t, "sig": sign(secret, cid, cmd, a, t)}


def parse_cli(text: str) -> tuple[str, dict[str, Any]]:
    """'pause' | 'set strategy.params.length=21' | 'set length=21 mult=2.5' | 'reload <id>' -> (cmd, args)."""
    parts = str(text or "").split()
    if not parts:
        raise ConfigError(f"config key cmd is empty; choose one of: {', '.join(COMMANDS)} "
                          "(e.g. cmd=pause, 'cmd=\"set strategy.params.length=21\"')")
    cmd, rest = parts[0], parts[1:]
    if cmd not in COMMANDS:
        raise ConfigError(f"config key cmd={cmd!r} is not a command; choose one of: {', '.join(COMMANDS)}")
    if cmd == "set":
        if not rest:
            raise ConfigError("cmd=set needs KEY=VALUE, e.g. 'cmd=\"set strategy.params.length=21\"'")
        params = {}
        for item in rest:
            k, eq, v = item.partition("=")
            if not eq:
                raise ConfigError(f"cmd=set: {item!r} is not KEY=VALUE")
            params[k.removeprefix("strategy.params.")] = _value(v)
        return cmd, {"params": params}
    if cmd == "reload":
        if len(rest) != 1:
            raise ConfigError("cmd=reload needs one strategy id from the library, e.g. 'cmd=\"reload 3f2a...\"'")
        return cmd, {"strategy_id": rest[0]}
    if rest:
        raise ConfigError(f"cmd={cmd} takes no arguments (got {' '.join(rest)!r})")
    return cmd, {}


def _value(v: str) -> Any:
    try:
        return json.loads(v)
    except ValueError:
        return v


class Controller:
    """Engine side: reads the command stream between reads of ticks."""

    def __init__(self, cfg: Any, journal: Any, redis_client: Any = None) -> None:
        if not cfg.secret:
            raise ConfigError("live.control=true needs live.secret: export AIO_LIVE_SECRET=<a long random string> "
                              "(conf/live/default.yaml reads it with ${oc.env:AIO_LIVE_SECRET})")
        from aio.live.sources import connect

        self.cfg = cfg
        self.r = redis_client or connect(cfg.redis_url)
        self.journal = journal
        # commands younger than max_age_s are still valid: start there, skip what the journal handled
        self.last_id = f"{int((time.time() - cfg.max_age_s) * 1000)}-0"
        self.engine: Any = None

    # -- engine loop hook ------------------------------------------------------------------
    def poll(self, engine: Any) -> None:
        if self.engine is None:
            self.engine = engine
            engine.on_applied = self._applied
        resp = self.r.xread({self.cfg.commands: self.last_id}, count=100)
        for _, entries in resp or []:
            for sid, fields in entries:
                self.last_id = sid.decode() if isinstance(sid, bytes) else sid
                self.handle({(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                             for k, v in fields.items()})

    def handle(self, f: dict[str, str]) -> None:
        engine = self.engine
        cid = f.get("id") or ""
        try:
            cmd = self.verify(f)
        except CommandRejected as exc:
            reason = str(exc)
            log.warning("control command refused", id=cid or None, cmd=f.get("cmd"), reason=reason)
            if cid and self.journal.command_seen(cid) is None:
                self.journal.record_command(cid, len(engine.hist), "rejected", f, reason)
            self.reply(cid, "rejected", reason=reason)
            return
        if cmd["cmd"] == "status":
            self.journal.record_command(cid, len(engine.hist), "answered", cmd)
            self.reply(cid, "answered", state=engine.state())
            return
        self.journal.record_command(cid, len(engine.hist), "accepted", cmd)
        engine.pending_cmds.append(cmd)
        log.info("control command accepted", id=cid, cmd=cmd["cmd"], effective="next bar close")

    def _applied(self, cmd: dict[str, Any], state: dict[str, Any]) -> None:
        self.journal.record_command(cmd["id"], state["bars"] - 1, "applied", cmd)
        self.reply(cmd["id"], "applied", state=state, bar=state["bars"] - 1)

    def reply(self, cid: str, status: str, *, reason: str | None = None, state: dict | None = None,
              bar: int | None = None) -> None:
        fields = {"id": cid, "status": status, "reason": reason or "", "bar": "" if bar is None else str(bar),
                  "state": json.dumps(state or {}, sort_keys=True, default=str)}
        self.r.xadd(self.cfg.replies, fields, maxlen=10_000, approximate=True)

    # -- checks ------------------------------------------------------------------------------
    def verify(self, f: dict[str, str]) -> dict[str, Any]:
        missing = [k for k in ("id", "cmd", "args", "ts") if not f.get(k)]
        if missing:
            raise CommandRejected(f"malformed command: missing {', '.join(missing)} (fields: id, cmd, args, ts, sig)")
        if not f.get("sig"):
            raise CommandRejected("unsigned command refused: sign 'id\\ncmd\\nargs\\nts' with HMAC-SHA256 and live.secret")
        good = sign(self.cfg.secret, f["id"], f["cmd"], f["args"], f["ts"])
        if not hmac.compare_digest(good, f["sig"]):
            raise CommandRejected("bad signature: the command was not signed with this engine's live.secret")
        try:
            ts = float(f["ts"])
        except ValueError:
            raise CommandRejected(f"malformed command: ts={f['ts']!r} is not seconds since the epoch") from None
        age = time.time() - ts
        if age > self.cfg.max_age_s or age < -self.cfg.max_age_s:
            raise CommandRejected(f"stale command refused: sent {age:.1f}s ago, live.max_age_s={self.cfg.max_age_s}")
        seen = self.journal.command_seen(f["id"])
        if seen in ("applied", "rejected", "answered") or any(c["id"] == f["id"] for c in self.engine.pending_cmds):
            raise CommandRejected(f"duplicate command id {f['id']!r} ({seen or 'pending'}): each id is applied once")
        if f["cmd"] not in COMMANDS:
            raise CommandRejected(f"unknown command {f['cmd']!r}; commands: {', '.join(COMMANDS)}")
        try:
            args = json.loads(f["args"])
        except ValueError as exc:
            raise CommandRejected(f"malformed command: args is not JSON ({exc})") from None
        if not isinstance(args, dict):
            raise CommandRejected("malformed command: args must be a JSON object")
        cmd = {"id": f["id"], "cmd": f["cmd"]}
        if f["cmd"] == "set":
            cmd["params"] = self._check_params(args)
        elif f["cmd"] == "reload":
            cmd["section"] = self._load_strategy(args)
        return cmd

    def _check_params(self, args: dict[str, Any]) -> dict[str, Any]:
        params = args.get("params")
        if not isinstance(params, dict) or not params:
            raise CommandRejected('set needs args {"params": {NAME: VALUE}}')
        strat = self.engine.strat
        unknown = [k for k in params if k not in strat.spec.params]
        if unknown:
            raise CommandRejected(f"set: unknown parameter {unknown[0]!r} of strategy {strat.spec.name}; "
                                  f"parameters: {', '.join(sorted(strat.spec.params))}")
        from aio.live.engine import _respec

        try:
            _respec(strat.section, {**strat.params, **params})
        except AioError as exc:
            raise CommandRejected(f"set: {exc}") from None
        return params

    def _load_strategy(self, args: dict[str, Any]) -> dict[str, Any]:
        sid = args.get("strategy_id")
        if not sid:
            raise CommandRejected('reload needs args {"strategy_id": ID}')
        path = args.get("library") or self.cfg.library
        if not path:
            raise CommandRejected("reload: no strategy library; set live.library (a LanceDB folder) or pass args.library")
        from aio.store.library import PatternLibrary
        from aio.strategy import load_spec

        try:
            rec = PatternLibrary(path).get_strategy(sid)
            definition = rec.definition if isinstance(rec.definition, dict) else json.loads(rec.definition)
            section = {**definition, "params": {**(definition.get("params") or {}), **dict(rec.params)}}
            spec = load_spec(section)
        except AioError as exc:
            raise CommandRejected(f"reload: {exc}") from None
        except Exception as exc:
            raise CommandRejected(f"reload: strategy {sid!r} could not be read from {path}: {exc}") from None
        cur = [(r.id, r.action, r.direction, r.type) for r in self.engine.strat.spec.rules]
        new = [(r.id, r.action, r.direction, r.type) for r in spec.rules]
        if cur != new:
            raise CommandRejected(f"reload: strategy {sid} has order slots {new} but the running one has {cur}; "
                                  "a live swap keeps the order slots (start a new paper run for another strategy)")
        return section


# -- task=control (the client) -----------------------------------------------------------------


def send(cfg: Any, cmd: str, args: dict[str, Any], *, redis_client: Any = None, wait: bool = True) -> dict[str, Any]:
    from aio.live.sources import connect

    if not cfg.secret:
        raise ConfigError("task=control needs live.secret: export AIO_LIVE_SECRET (the engine's secret)")
    r = redis_client or connect(cfg.redis_url)
    start = r.xinfo_stream(cfg.replies)["last-generated-id"] if r.exists(cfg.replies) else "0-0"
    start = start.decode() if isinstance(start, bytes) else start
    msg = make_command(cfg.secret, cmd, args)
    r.xadd(cfg.commands, msg)
    if not wait:
        return {"id": msg["id"], "status": "sent"}
    deadline = time.monotonic() + cfg.reply_timeout_s
    last = start
    while time.monotonic() < deadline:
        resp = r.xread({cfg.replies: last}, block=200, count=100)
        for _, entries in resp or []:
            for sid, fields in entries:
                last = sid
                f = {k.decode(): v.decode() for k, v in fields.items()}
                if f.get("id") == msg["id"]:
                    f["state"] = json.loads(f.get("state") or "{}")
                    return f
    raise AioError(f"no reply to {cmd} (id {msg['id']}) within live.reply_timeout_s={cfg.reply_timeout_s}s: "
                   f"is a paper run with live.control=true reading {cfg.commands} on {cfg.redis_url}? "
                   "(set/pause/flatten are answered at the next bar close)")


def stage_control(run: Any) -> None:
    from aio.live.stages import live_config

    cfg = live_config(run.cfg)
    cmd, args = parse_cli(run.cfg.get("cmd"))
    reply = send(cfg, cmd, args)
    run.metrics["control"] = reply
    print(json.dumps(reply, indent=2, sort_keys=True), flush=True)
    if reply.get("status") == "rejected":
        raise AioError(f"command {cmd} rejected: {reply.get('reason')}")
