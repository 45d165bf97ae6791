"""How numbers read on every page: one place, so money, percents and durations look alike.

Field names carry their unit (PROTOCOL: ``*_pct`` is a percent, ``*_seconds`` a
duration); a few historical keys are fractions and are listed here.
"""

from __future__ import annotations

import html
import math
from typing import Any

# keys whose value is a fraction (0.05 = 5 %), shown as a percent
FRACTION_KEYS = {"cagr", "var_95", "cvar_95", "dsr", "psr", "coverage", "accuracy", "win_rate_frac"}
PERCENT_KEYS = {"win_rate"}  # already in percent, without the _pct suffix
MONEY_KEYS = {"net_profit", "max_drawdown", "expectancy", "avg_win", "avg_loss", "pnl", "commission",
              "gross_profit", "gross_loss", "initial_capital", "final_equity", "largest_win", "largest_loss",
              "is_net_profit", "oos_net_profit", "mae_money", "mfe_money", "pnl_quote"}
COUNT_KEYS = {"id", "rank", "warning_count", "trials", "trade_count", "trades", "bars", "is_bars", "oos_bars", "n_trials", "complete", "pruned", "failed",
              "is_trades", "oos_trades", "oos_rows", "rows", "fold", "best_trial", "folds"}
MINUS = "\u2212"


def _signed(text: str) -> str:
    """A typographic minus; none on a value that rounds to zero ("-0.00")."""
    if text.startswith("-") and not any(ch in "123456789" for ch in text):
        text = text[1:]
    return text.replace("-", MINUS)


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def money(v: Any) -> str:
    """Cents; amounts under a cent (a one-unit backtest) keep their first digits instead of 0.00."""
    f = _finite(v)
    if f is None:
        return "n/a"
    if 0 < abs(f) < 0.005:
        text = f"{f:.6f}".rstrip("0")
        return _signed(text if len(text.split(".")[1]) >= 2 else f"{f:.2f}")
    return _signed(f"{f:,.2f}")


def percent(v: Any, fraction: bool = False) -> str:
    f = _finite(v)
    if f is None:
        return "n/a"
    f = f * 100 if fraction else f
    return _signed(f"{f:,.2f}") + " %"


def ratio(v: Any) -> str:
    f = _finite(v)
    if f is None:
        return "n/a"
    if f != 0 and abs(f) < 1e-3:
        return _signed(f"{f:.3g}")
    return _signed(f"{f:,.3f}")


def count(v: Any) -> str:
    f = _finite(v)
    return "n/a" if f is None else f"{int(round(f)):,d}"


def duration(seconds: Any) -> str:
    """3 d 4 h, 5 h 12 min, 42 min, 30 s: days and hours for a reader, not seconds."""
    f = _finite(seconds)
    if f is None:
        return "n/a"
    s = abs(f)
    sign = MINUS if f < 0 else ""
    if s >= 86400:
        d, h = divmod(int(round(s / 3600)), 24)
        return f"{sign}{d} d {h} h"
    if s >= 3600:
        h, m = divmod(int(round(s / 60)), 60)
        return f"{sign}{h} h {m} min"
    if s >= 60:
        return f"{sign}{int(round(s / 60))} min"
    return f"{sign}{s:.0f} s"


def kind(key: str) -> str:
    """The unit a key carries: money | percent | fraction | duration | count | price | quantity | ratio."""
    k = key.rsplit(".", 1)[-1]
    if k.endswith("_price") or k == "price":
        return "price"
    if k == "qty":
        return "quantity"
    if k in FRACTION_KEYS or k.endswith("_frac") or k.endswith("_fraction"):
        return "fraction"
    if k.endswith("_pct") or k in PERCENT_KEYS:
        return "percent"
    if k.endswith("_seconds") or k.endswith("_s") or k == "seconds":
        return "duration"
    if k.endswith("_days"):
        return "days"
    if k in MONEY_KEYS or k.endswith("_profit") or k.endswith("_pnl"):
        return "money"
    if k in COUNT_KEYS or k.endswith("_bars") or k.endswith("_count"):
        return "count"
    return "ratio"


def value(key: str, v: Any) -> str:
    """One metrics value as text, by the unit its key names."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list, tuple)):
        return ", ".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else ", ".join(map(str, v))
    k = kind(key)
    if k == "money":
        return money(v)
    if k == "percent":
        return percent(v)
    if k == "fraction":
        return percent(v, fraction=True)
    if k == "duration":
        return duration(v)
    if k == "days":
        f = _finite(v)
        return "n/a" if f is None else duration(f * 86400.0)
    if k == "count":
        return count(v)
    if k == "price":
        f = _finite(v)
        return "n/a" if f is None else _signed(f"{f:,.5f}")
    if k == "quantity":
        f = _finite(v)
        return "n/a" if f is None else _signed(f"{f:,.6g}")
    return ratio(v)


def sort_key(v: Any) -> str:
    """data-sort attribute: the raw number, so the table sorts numerically, not by text."""
    f = _finite(v)
    if f is not None:
        return repr(f)
    return "" if v is None else html.escape(str(v), quote=True)


NAMES = {"sharpe": "Sharpe", "sortino": "Sortino", "calmar": "Calmar", "sharpe_ci_low": "Sharpe 95 % CI low",
         "sharpe_ci_high": "Sharpe 95 % CI high", "psr": "probabilistic Sharpe (%)", "dsr": "deflated Sharpe (%)",
         "sqn": "SQN", "cagr_pct": "CAGR (%)", "var_95_pct": "VaR 95 % (% per bar)",
         "cvar_95_pct": "CVaR 95 % (% per bar)", "max_drawdown_duration_days": "max drawdown duration"}


def label(key: str) -> str:
    """A header a reader understands: 'max_drawdown_pct' -> 'max drawdown (%)'."""
    if key in NAMES:
        return NAMES[key]
    k = key
    unit = {"money": " (acct ccy)", "percent": " (%)", "fraction": " (%)", "duration": ""}.get(kind(key), "")
    for suffix in ("_pct", "_seconds", "_days", "_frac", "_fraction"):
        if k.endswith(suffix):
            k = k[: -len(suffix)]
    return k.replace("_", " ") + unit
