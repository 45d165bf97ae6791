"""Filters of a similarity search, turned into a LanceDB SQL ``where`` clause."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

from aio.errors import AioError

Choice = str | Sequence[str] | None


@dataclass(frozen=True)
class PatternFilter:
    """Which patterns a search may return; every set field must hold (AND).

    ``ts_from`` / ``ts_to`` bound ``ts_init`` as a half-open range [from, to).
    ``label_end_before`` keeps only patterns whose outcome was known strictly before
    that time: pass the query bar's ``ts_init`` so no neighbour's label overlaps it.
    """

    symbol: Choice = None
    timeframe: Choice = None
    regime: Choice = None
    model_id: Choice = None
    ts_from: int | None = None
    ts_to: int | None = None
    label_end_before: int | None = None

    @classmethod
    def coerce(cls, value: "PatternFilter | Mapping[str, Any] | None") -> "PatternFilter":
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise AioError(f"unknown pattern filter {unknown[0]!r}; filters are: {', '.join(sorted(allowed))}")
        return cls(**dict(value))


def _quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _choice(column: str, value: Choice) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return f"{column} = {_quote(value)}"
    values = list(value)
    if not values:
        return "false"  # an empty choice matches nothing, as in SQL
    return f"{column} IN ({', '.join(_quote(v) for v in values)})"


def where_clause(flt: PatternFilter, ts_before: int | None = None) -> str | None:
    """SQL predicate for ``flt``; ``ts_before`` adds ``label_end_ts < ts_before``."""
    parts = [
        _choice("symbol", flt.symbol),
        _choice("timeframe", flt.timeframe),
        _choice("regime", flt.regime),
        _choice("model_id", flt.model_id),
    ]
    if flt.ts_from is not None:
        parts.append(f"ts_init >= {int(flt.ts_from)}")
    if flt.ts_to is not None:
        parts.append(f"ts_init < {int(flt.ts_to)}")
    bounds = [b for b in (flt.label_end_before, ts_before) if b is not None]
    if bounds:
        parts.append(f"label_end_ts < {int(min(bounds))}")
    parts = [p for p in parts if p]
    return " AND ".join(f"({p})" for p in parts) if parts else None
