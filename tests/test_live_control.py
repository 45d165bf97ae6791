"""Live control against a real redis-server: signed commands, refusals with reasons, journaled changes."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import redis
import yaml

from aio.backtest import BacktestConfig
from aio.config import build
from aio.data.synthetic import SyntheticDataConfig, SyntheticSource
from aio.errors import ConfigError
from aio.live.config import LiveConfig
from aio.live.control import Controller, make_command, parse_cli, send, sign
from aio.live.engine import make_engine
from aio.live.publish import publish_frame
from aio.live.sources import RedisSource
from aio.strategy import load_spec, signals
from tests._redis_server import redis_server, redis_url  # noqa: F401  (fixtures)
from tests.test_live_engine import REPO

SECRET = "test-secret-0123456789"
TF = 60_000_000_000


@pytest.fixture(scope="module")
def ticks():
    cfg = build(SyntheticDataConfig, {"start": "2024-03-04", "end": "2024-03-04T12:00"}, "data")
    return SyntheticSource(cfg).load().frame


def _cfg(url, **kw):
    return build(LiveConfig, {"redis_url": url, "stream": "c:ticks", "batch": 400, "block_ms": 20, "control": True,
                              "secret": SECRET, "max_age_s": 30, "reply_timeout_s": 20, **kw}, "live")


def _wait_reply(r, cid, timeout=20.0, since="0-0"):
    last = since
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, entries in r.xread({"aio:live:replies": last}, block=100) or []:
            for sid, fields in entries:
                last = sid
                f = {k.decode(): v.decode() for k, v in fields.items()}
                if f["id"] == cid:
                    f["state"] = json.loads(f["state"])
                    return f
    raise AssertionError(f"no reply to {cid}")


def _minute_slice(ticks, a, b):
    ts = ticks.get_column("ts_event").to_numpy()
    t0 = ts[0] // TF * TF
    return ticks.filter((ticks["ts_event"] >= t0 + a * TF) & (ticks["ts_event"] < t0 + b * TF))


def test_parse_cli():
    assert parse_cli("pause") == ("pause", {})
    assert parse_cli("set strategy.params.fastLength=5 MACDLength=7") == ("set", {"params": {"fastLength": 5,
                                                                                           "MACDLength": 7}})
    with pytest.raises(ConfigError, match="not a command"):
        parse_cli("explode")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_cli("set")


def test_control_end_to_end(redis_url, ticks, tmp_path):
    r = redis.Redis.from_url(redis_url)
    cfg = _cfg(redis_url)
    section = yaml.safe_load((REPO / "conf" / "strategy" / "tv_macd.yaml").read_text())
    bt = build(BacktestConfig, yaml.safe_load((REPO / "conf" / "backtest" / "default.yaml").read_text()), "backtest")
    eng = make_engine(section, bt, tmp_path / "j.sqlite")
    publish_frame(r, "c:ticks", _minute_slice(ticks, 0, 120), "ticks", end=False)
    src = RedisSource(cfg, SimpleNamespace(cfg={}))
    ctl = Controller(cfg, eng.journal)
    th = threading.Thread(target=eng.run, args=(src, ctl), daemon=True)
    th.start()
    deadline = time.monotonic() + 60
    while len(eng.hist) < 119 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(eng.hist) == 119  # minute 119 stays open until a later tick arrives

    st = send(cfg, "status", {}, redis_client=r)
    assert st["status"] == "answered" and st["state"]["bars"] == 119 and st["state"]["paused"] is False

    def refused(fields, why):
        r.xadd("aio:live:commands", fields)
        rep = _wait_reply(r, fields["id"])
        assert rep["status"] == "rejected", rep
        assert why in rep["reason"], rep["reason"]

    good = make_command(SECRET, "pause", {})
    refused({k: v for k, v in good.items() if k != "sig"}, "unsigned")
    refused({**make_command("wrong-secret", "pause", {}), "id": "c-badsig"}, "bad signature")
    refused(make_command(SECRET, "pause", {}, ts=time.time() - 3600), "stale")
    refused(make_command(SECRET, "explode", {}), "unknown command 'explode'")
    bad = make_command(SECRET, "set", {})
    refused({**bad, "args": "{not json", "sig": sign(SECRET, bad["id"], "set", "{not json", bad["ts"])}, "not JSON")
    refused(make_command(SECRET, "set", {"params": {"lenght": 3}}), "unknown parameter 'lenght'")
    refused(make_command(SECRET, "set", {"params": {"fastLength": 40}}), "fastLength < slowlength")
    refused({"id": "x1", "cmd": "pause"}, "missing args, ts")
    rejected = eng.journal.db.execute("SELECT COUNT(*) FROM commands WHERE status = 'rejected'").fetchone()[0]
    assert rejected == 8  # every refusal is journaled (the unsigned one under its id too)

    # a parameter change waits for the next bar close, then is journaled before that decision
    msg = make_command(SECRET, "set", {"params": {"fastLength": 5}})
    r.xadd("aio:live:commands", msg)
    time.sleep(0.3)
    assert len(eng.hist) == 119 and eng.strat.params["fastLength"] == 12
    publish_frame(r, "c:ticks", _minute_slice(ticks, 120, 200), "ticks", end=False)
    rep = _wait_reply(r, msg["id"])
    assert rep["status"] == "applied" and rep["state"]["params"]["fastLength"] == 5
    t_set = int(rep["bar"])
    assert t_set == 119
    ev = eng.journal.events(t_set)
    assert [e[2] for e in ev[:2]] == ["command", "decision"]
    # replaying the same command id is refused
    since = r.xinfo_stream("aio:live:replies")["last-generated-id"]
    r.xadd("aio:live:commands", msg)
    dup = _wait_reply(r, msg["id"], since=since)
    assert dup["status"] == "rejected" and "duplicate command id" in dup["reason"]

    # pause: no new orders; flatten: flat at the next open and paused; resume
    for c in ("pause", "flatten"):
        m = make_command(SECRET, c, {})
        r.xadd("aio:live:commands", m)
        publish_frame(r, "c:ticks", _minute_slice(ticks, 200 + 40 * (c == "flatten"), 240 + 40 * (c == "flatten")),
                      "ticks", end=False)
        rep = _wait_reply(r, m["id"])
        assert rep["status"] == "applied" and rep["state"]["paused"] is True
    t_flat = int(rep["bar"])
    m = make_command(SECRET, "resume", {})
    r.xadd("aio:live:commands", m)
    publish_frame(r, "c:ticks", _minute_slice(ticks, 280, 720), "ticks", end=True)
    rep = _wait_reply(r, m["id"])
    assert rep["state"]["paused"] is False
    t_resume = int(rep["bar"])
    th.join(60)
    assert not th.is_alive()

    # decisions equal the batch rules with the parameters in force at each bar
    hist = eng.hist.arrays()
    new = load_spec({**section, "params": {**section["params"], "fastLength": 5}})
    old = load_spec(section)
    sig_new, sig_old = signals(new, hist), signals(old, hist)
    dec = {t: json.loads(p) for t, _, k, p in eng.journal.events(kind="decision")}
    paused_bars = set(range(int(_bar_of(eng, "pause")), t_resume))
    for t, d in dec.items():
        s = sig_new if t >= t_set else sig_old
        want = [bool(o.when[t]) and t not in paused_bars for o in s.orders]
        assert d["when"] == want, t
    # flatten: the position is closed at the open after the flatten bar, by the Flatten order
    res = eng.result()
    flat = res.trades.filter(res.trades["exit_signal"] == "Flatten")
    pos = res.position_values
    assert pos[t_flat] != 0.0, "the test needs a position to flatten"
    assert flat.height == 1 and int(flat["exit_bar"][0]) == t_flat + 1
    assert np.all(pos[t_flat + 1:t_resume + 1] == 0.0)


def _bar_of(eng, cmd):
    for t, _, kind, p in eng.journal.events(kind="command"):
        if json.loads(p)["cmd"] == cmd:
            return t
    raise AssertionError(cmd)


def test_control_refuses_to_start_without_a_secret(redis_url, tmp_path):
    cfg = build(LiveConfig, {"redis_url": redis_url, "control": True}, "live")
    with pytest.raises(ConfigError, match="AIO_LIVE_SECRET"):
        Controller(cfg, None)


def test_reload_a_strategy_from_the_library(redis_url, tmp_path):
    from aio.store.library import PatternLibrary
    from aio.store.records import StrategyRecord

    r = redis.Redis.from_url(redis_url)
    macd = yaml.safe_load((REPO / "conf" / "strategy" / "tv_macd.yaml").read_text())
    rsi = yaml.safe_load((REPO / "conf" / "strategy" / "tv_rsi.yaml").read_text())
    lib = PatternLibrary(tmp_path / "lib")
    same_slots, other_slots = lib.add_strategy([StrategyRecord("tv_macd", macd, {"fastLength": 8, "slowlength": 30}),
                                                StrategyRecord("tv_rsi", rsi, {})])
    cfg = _cfg(redis_url, library=str(tmp_path / "lib"))
    bt = BacktestConfig()
    eng = make_engine(macd, bt, tmp_path / "j.sqlite")
    ctl = Controller(cfg, eng.journal)
    for sid, status, why in ((other_slots, "rejected", "keeps the order slots"), ("nope", "rejected", "no strategy"),
                             (same_slots, None, None)):
        m = make_command(SECRET, "reload", {"strategy_id": sid})
        r.xadd("aio:live:commands", m)
        ctl.poll(eng)
        if status:
            rep = _wait_reply(r, m["id"])
            assert rep["status"] == status and why in rep["reason"], rep
    assert [c["cmd"] for c in eng.pending_cmds] == ["reload"]
    from aio.live.aggregate import ClosedBar

    eng.close_bars([ClosedBar(0, TF, 1.1, 1.2, 1.0, 1.15, 1.0, 5, 1e-5, "0")])
    assert eng.strat.params["fastLength"] == 8 and eng.strat.params["slowlength"] == 30
    rep = _wait_reply(r, m["id"])
    assert rep["status"] == "applied" and rep["state"]["params"]["fastLength"] == 8
