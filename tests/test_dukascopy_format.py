"""Dukascopy formats against real files: bi5 ticks/candles, JSON API, instrument points."""

from __future__ import annotations

import json
import lzma
import struct
from pathlib import Path

import numpy as np
import pytest

from aio.data.dukascopy import bi5, jsonapi
from aio.data.dukascopy.bi5 import CorruptFileError
from aio.data.dukascopy.instruments import derive_table, lookup, table
from aio.errors import ConfigError


def _hour_index(y, m, d, h):
    from datetime import datetime, timezone

    return int(datetime(y, m, d, h, tzinfo=timezone.utc).timestamp()) // 3600


@pytest.fixture(scope="module")
def node(dukascopy_dir: Path) -> Path:
    return dukascopy_dir / "dukascopy-node"


def _expected(node: Path, name: str) -> dict:
    return json.loads((node / "expected" / f"{name}.expected.json").read_text())


# -- ticks ------------------------------------------------------------------------------


def test_tick_file_matches_dukascopy_node_expected_decode(node):
    exp = _expected(node, "tick")
    ticks = bi5.decode_ticks((node / exp["file"]).read_bytes())
    rows = np.array(exp["rows"], dtype=np.float64)
    assert len(ticks) == len(rows) == 3733
    np.testing.assert_array_equal(ticks["ms"], rows[:, 0])
    np.testing.assert_array_equal(ticks["ask"], rows[:, 1])
    np.testing.assert_array_equal(ticks["bid"], rows[:, 2])
    # expected volumes were printed from float32 values: compare at float32 precision
    np.testing.assert_array_equal(ticks["ask_volume"], rows[:, 3].astype(np.float32))
    np.testing.assert_array_equal(ticks["bid_volume"], rows[:, 4].astype(np.float32))


def test_eurusd_first_tick_scaled_with_table_point(node):
    inst = lookup("EURUSD")
    assert inst.decimal_factor == 100_000 and inst.point == pytest.approx(1e-5) and inst.pip == pytest.approx(1e-4)
    hour = _hour_index(2019, 2, 4, 0)
    ticks = bi5.decode_ticks((node / bi5.tick_path("EURUSD", hour)).read_bytes())
    cols = bi5.tick_columns(ticks, hour, inst.decimal_factor)
    assert bi5.tick_path("EURUSD", hour) == "EURUSD/2019/01/04/00h_ticks.bi5"  # month zero-based
    assert cols["ts_event"][0] == (1549238400 * 1000 + 994) * 1_000_000  # 00:00:00.994 UTC
    assert cols["ask"][0] == 1.14545 and cols["bid"][0] == 1.14543
    assert len(cols["ts_event"]) == 3733


def test_gbpjpy_first_tick_point_1e3(dukascopy_dir):
    inst = lookup("GBPJPY")
    assert inst.decimal_factor == 1000 and inst.pip == pytest.approx(0.01)
    hour = _hour_index(2012, 12, 3, 0)
    path = dukascopy_dir / "ninety47" / bi5.tick_path("GBPJPY", hour)
    cols = bi5.tick_columns(bi5.decode_ticks(path.read_bytes()), hour, inst.decimal_factor)
    assert len(cols["ts_event"]) == 2054
    assert cols["ts_event"][0] - hour * 3_600 * 10**9 == 1883 * 10**6
    assert cols["ask"][0] == 132.158 and cols["bid"][0] == 132.141


def test_decompressed_twins_match_and_struct_agrees(dukascopy_dir):
    raw_dir = dukascopy_dir / "ninety47" / "raw" / "GBPJPY" / "2012" / "11" / "03"
    twins = sorted(raw_dir.glob("*_ticks.bin"))
    assert twins
    for twin in twins:
        packed = (dukascopy_dir / "ninety47" / "GBPJPY" / "2012" / "11" / "03" / twin.name.replace(".bin", ".bi5"))
        raw = twin.read_bytes()
        assert bi5.decompress(packed.read_bytes()) == raw
        ticks = bi5.decode_ticks(packed.read_bytes())
        ref = list(struct.iter_unpack(">3I2f", raw))
        assert len(ref) == len(ticks)
        if ref:
            assert tuple(ticks[-1].tolist()) == pytest.approx(ref[-1])
            assert tuple(ticks[0].tolist()) == pytest.approx(ref[0])


def test_zero_byte_file_is_an_hour_without_ticks(node):
    assert (node / "empty.bi5").stat().st_size == 0
    assert bi5.decode_ticks((node / "empty.bi5").read_bytes()).size == 0


# -- candles ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,count", [("m1", 1440), ("h1", 672), ("d1", 365)])
def test_candle_files_match_expected(node, name, count):
    exp = _expected(node, name)
    candles = bi5.decode_candles((node / exp["file"]).read_bytes())
    rows = np.array(exp["rows"], dtype=np.float64)
    assert len(candles) == len(rows) == count
    for i, col in enumerate(("seconds", "open", "close", "low", "high")):
        np.testing.assert_array_equal(candles[col], rows[:, i])
    np.testing.assert_array_equal(candles["volume"], rows[:, 5].astype(np.float32))


def test_candle_paths():
    from datetime import datetime, timezone

    t = datetime(2019, 2, 4, tzinfo=timezone.utc)
    assert bi5.candle_path("EURUSD", "BID", "min", t) == "EURUSD/2019/01/04/BID_candles_min_1.bi5"
    assert bi5.candle_path("EURUSD", "BID", "hour", t) == "EURUSD/2019/01/BID_candles_hour_1.bi5"
    assert bi5.candle_path("EURUSD", "ASK", "day", t) == "EURUSD/2019/ASK_candles_day_1.bi5"


def test_m1_candle_equals_aggregate_of_its_ticks(node):
    hour = _hour_index(2019, 2, 4, 0)
    ticks = bi5.decode_ticks((node / bi5.tick_path("EURUSD", hour)).read_bytes())
    m1 = bi5.decode_candles((node / "EURUSD/2019/01/04/BID_candles_min_1.bi5").read_bytes())
    minute = ticks["ms"] // 60_000
    for k in range(60):  # every minute of the hour, not only the first
        bids = ticks["bid"][minute == k]
        c = m1[k]
        assert c["seconds"] == 60 * k
        assert (c["open"], c["high"], c["low"], c["close"]) == (bids[0], bids.max(), bids.min(), bids[-1])
        assert float(c["volume"]) == pytest.approx(ticks["bid_volume"][minute == k].astype(np.float64).sum(), rel=1e-5)
    assert (m1[0]["open"], m1[0]["high"], m1[0]["low"], m1[0]["close"]) == (114543, 114570, 114542, 114569)
    assert float(m1[0]["volume"]) == pytest.approx(293.76, abs=1e-4)


def test_ask_candles_sit_above_bid_candles(dukascopy_dir, node):
    ask = bi5.decode_candles((dukascopy_dir / "theorycraft/EURUSD/2019/01/04/ASK_candles_min_1.bi5").read_bytes())
    bid = bi5.decode_candles((node / "EURUSD/2019/01/04/BID_candles_min_1.bi5").read_bytes())
    assert len(ask) == len(bid) == 1440
    np.testing.assert_array_equal(ask["seconds"], bid["seconds"])
    for col in ("open", "close", "low", "high"):
        assert (ask[col] >= bid[col]).all()


# -- corruption is an error, never partial data ------------------------------------------


def test_corrupt_inputs_raise(node):
    good = (node / "EURUSD/2019/01/04/00h_ticks.bi5").read_bytes()
    bad = {
        "truncated": good[: len(good) // 2],
        "one byte short": good[:-1],
        "garbage": bytes(range(256)) * 8,
        "trailing junk": good + b"\x00junk",
    }
    for why, data in bad.items():
        with pytest.raises(CorruptFileError):
            bi5.decode_ticks(data)
    # records that are not 20 bytes wide
    with pytest.raises(CorruptFileError, match="20-byte"):
        bi5.decode_ticks(lzma.compress(b"\x00" * 30, format=lzma.FORMAT_ALONE))


@pytest.mark.parametrize(
    "cols,match",
    [
        (([3_600_000], [114545], [114543], [1.0], [1.0]), "outside the hour"),
        (([10], [114543], [114545], [1.0], [1.0]), "ask < bid"),
        (([10], [0], [0], [1.0], [1.0]), "non-positive"),
        (([10], [114545], [114543], [-1.0], [1.0]), "volume"),
    ],
)
def test_implausible_records_raise(cols, match):
    with pytest.raises(CorruptFileError, match=match):
        bi5.decode_ticks(bi5.encode_ticks(*cols))


def test_encoder_round_trips_a_reference_hour(node):
    data = (node / "EURUSD/2019/01/04/13h_ticks.bi5").read_bytes()
    t = bi5.decode_ticks(data)
    again = bi5.decode_ticks(bi5.encode_ticks(t["ms"], t["ask"], t["bid"], t["ask_volume"], t["bid_volume"]))
    assert again.tobytes() == t.tobytes()
    assert bi5.encode_ticks([], [], [], [], []) == b""


# -- JSON API ---------------------------------------------------------------------------


def test_json_api_ticks_equal_the_bi5_hour(dukascopy_dir, node):
    hour = _hour_index(2023, 2, 20, 12)
    inst = lookup("BTCUSD")
    assert inst.json_code == "BTC-USD" and inst.decimal_factor == 10 and inst.kind == "crypto"
    body = (dukascopy_dir / "json-api/ticks-BTC-USD-2023-2-20-12.json").read_bytes()
    js = jsonapi.decode_json_ticks(body, hour, inst.decimal_factor)
    b5 = bi5.decode_ticks((node / bi5.tick_path("BTCUSD", hour)).read_bytes())
    assert len(js) == len(b5) == 8523
    for col in ("ms", "ask", "bid"):
        np.testing.assert_array_equal(js[col], b5[col])
    assert jsonapi.tick_url("http://x/v1", "BTC-USD", hour) == "http://x/v1/ticks/BTC-USD/2023/2/20/12"
    with pytest.raises(CorruptFileError, match="timestamp"):
        jsonapi.decode_json_ticks(body, hour + 1, inst.decimal_factor)
    with pytest.raises(CorruptFileError):
        jsonapi.decode_json_ticks(body[: len(body) // 2], hour, inst.decimal_factor)


def test_json_api_candles_equal_bi5_candles(dukascopy_dir, node):
    api = dukascopy_dir / "json-api"
    js = jsonapi.decode_json_candles((api / "candles-minute-BTC-USD-BID-2023-2-19.json").read_bytes())
    b5 = bi5.decode_candles((node / "BTCUSD/2023/01/19/BID_candles_min_1.bi5").read_bytes())
    day_ms = 1676764800000  # 2023-02-19 00:00 UTC
    idx = np.searchsorted(b5["seconds"].astype(np.int64) * 1000 + day_ms, js["ms"])
    assert len(js["ms"]) == 1437 and (b5["seconds"][idx].astype(np.int64) * 1000 + day_ms == js["ms"]).all()
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(np.rint(js[col] * 10).astype(np.int64), b5[col][idx])
    # the 3 minutes the API leaves out are flat zero-volume candles
    missing = np.setdiff1d(np.arange(len(b5)), idx)
    assert (b5["volume"][missing] == 0).all() and (b5["open"][missing] == b5["close"][missing]).all()
    empty = jsonapi.decode_json_candles((api / "candles-minute-EUR-USD-BID-2026-7-11-empty.json").read_bytes())
    assert all(len(v) == 0 for v in empty.values())


# -- instruments ------------------------------------------------------------------------


def test_shipped_table_is_the_derivation_of_the_reference(node):
    meta = json.loads((node / "instrument-meta-data.5d1b3f1.json").read_text())
    from importlib import resources

    shipped = json.loads(resources.files("aio.data.dukascopy").joinpath("instruments.json").read_text())
    assert shipped == json.loads(json.dumps(derive_table(meta)))
    assert "MIT License" in shipped["license"]
    assert len(table()) == len(meta)


@pytest.mark.parametrize(
    "symbol,factor,kind",
    [("EURUSD", 100_000, "fx"), ("usdjpy", 1_000, "fx"), ("EUR/USD", 100_000, "fx"), ("XAUUSD", 1_000, "metal"),
     ("BTCUSD", 10, "crypto"), ("USA30IDXUSD", 1_000, "index"), ("BRENTCMDUSD", 1_000, "commodity")],
)
def test_points_come_from_the_table(symbol, factor, kind):
    inst = lookup(symbol)
    assert inst.decimal_factor == factor and inst.kind == kind


def test_unknown_symbol_lists_close_matches():
    with pytest.raises(ConfigError, match="EURUSD") as err:
        lookup("EURUDS")
    assert "data.symbol" in str(err.value)
