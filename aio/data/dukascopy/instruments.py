"""Instrument table: Dukascopy symbol -> price point (decimal factor), never guessed.

The shipped table ``instruments.json`` is derived from dukascopy-node's
``instrument-meta-data.json`` (MIT, Copyright (c) 2022 Leonid Pyrlia); only the
decimal factor, the display name (which gives the JSON API code) and the
description are kept. Regenerate it with::

    python -m aio.data.dukascopy.instruments PATH/TO/instrument-meta-data.json
"""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from aio.errors import ConfigError

TABLE_FILE = "instruments.json"

SOURCE = "Leo4815162342/dukascopy-node@5d1b3f1 instrument-meta-data.json (decimalFactor, name, description)"

LICENSE = """MIT License

Copyright (c) 2022 Leonid Pyrlia

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

# Fiat currencies and metals quoted as plain "AAA/BBB" pairs; any other plain pair
# is a crypto currency, which trades around the clock (no weekend close).
_FIAT = frozenset(
    "AED AUD CAD CHF CNH CZK DKK EUR GBP HKD HUF ILS JPY MXN NOK NZD PLN RON SAR SEK SGD "
    "THB TRY USD ZAR XAU XAG".split()
)

Kind = Literal["fx", "metal", "crypto", "index", "commodity", "stock"]


@dataclass(frozen=True)
class Instrument:
    symbol: str  # datafeed path component, e.g. EURUSD, USA30IDXUSD
    decimal_factor: int  # integer price units per 1.0 of price (EURUSD 100000)
    name: str  # display name, e.g. EUR/USD
    description: str

    @property
    def point(self) -> float:
        return 1.0 / self.decimal_factor

    @property
    def pip(self) -> float:
        """Conventional pip: 10 points for 5/3-digit FX quotes, else one point."""
        if self.kind == "fx" and self.decimal_factor in (100_000, 1_000):
            return 10.0 / self.decimal_factor
        return self.point

    @property
    def json_code(self) -> str:
        """Instrument code of the Dukascopy JSON API (EUR/USD -> EUR-USD)."""
        return self.name.replace("/", "-")

    @property
    def kind(self) -> Kind:
        base, _, quote = self.name.partition("/")
        if "." in base:
            suffix = base.rsplit(".", 1)[1]
            return {"IDX": "index", "CMD": "commodity"}.get(suffix, "stock")  # type: ignore[return-value]
        if base in _FIAT and quote in _FIAT:
            return "metal" if base in ("XAU", "XAG") else "fx"
        return "crypto"

    @property
    def trades_weekends(self) -> bool:
        return self.kind == "crypto"


def _unmangle(text: str) -> str:
    """Undo UTF-8 read as Latin-1 in the source ('zÅ‚oty' -> 'złoty'); other text as is."""
    try:
        fixed = text.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text
    return fixed


def derive_table(meta: dict) -> dict:
    """The shipped table from dukascopy-node's instrument metadata (deterministic)."""
    rows = {}
    for key in sorted(meta):
        v = meta[key]
        # 999999.9999999999 in the source is 1e6 written through a float
        rows[key.upper()] = [int(round(float(v["decimalFactor"]))), v["name"], _unmangle(v["description"])]
    columns = ["decimal_factor", "name", "description"]
    return {"source": SOURCE, "license": LICENSE, "columns": columns, "instruments": rows}


@lru_cache(maxsize=1)
def table() -> dict[str, Instrument]:
    raw = json.loads(resources.files(__package__).joinpath(TABLE_FILE).read_text(encoding="utf-8"))
    return {sym: Instrument(sym, int(f), name, desc) for sym, (f, name, desc) in raw["instruments"].items()}


def normalize(symbol: str) -> str:
    """EUR/USD, eurusd, EUR-USD, USA30.IDX/USD -> the datafeed's spelling."""
    return "".join(ch for ch in str(symbol).upper() if ch.isalnum())


def lookup(symbol: str) -> Instrument:
    """The instrument for ``symbol`` or a ConfigError naming close matches."""
    tab = table()
    key = normalize(symbol)
    if key in tab:
        return tab[key]
    close = difflib.get_close_matches(key, list(tab), n=5, cutoff=0.6)
    if not close:  # substring matches catch e.g. "XAU" or "GER40"-like partial names
        close = [s for s in tab if key and key in s][:5]
    hint = (
        "close matches: " + ", ".join(f"{s} ({tab[s].description})" for s in close)
        if close
        else f"no close match among {len(tab)} instruments"
    )
    raise ConfigError(
        f"config key data.symbol={symbol!r} is not a Dukascopy instrument; {hint}. "
        "Use the datafeed spelling without separators, e.g. EURUSD, USDJPY, XAUUSD, BTCUSD."
    )


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m aio.data.dukascopy.instruments PATH/TO/instrument-meta-data.json", file=sys.stderr)
        return 2
    meta = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    out = Path(__file__).with_name(TABLE_FILE)
    out.write_text(json.dumps(derive_table(meta), ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(meta)} instruments)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
