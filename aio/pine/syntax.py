"""Safe Pine tokens: identifiers are validated, strings escaped, numbers formatted.

Nothing from a config reaches the script unchecked: an identifier must match the
Pine identifier grammar and must not shadow a keyword or a built-in namespace.
"""

from __future__ import annotations

import math
import re

from aio.errors import ExportError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = frozenset(
    """and or not if else for to by while switch var varip import export method type true false na
    series simple const input int float bool color string line label table box array matrix map
    linefill polyline chart strategy ta math str request syminfo timeframe time time_close open high
    low close volume hl2 hlc3 hlc3 ohlc4 hlcc4 bar_index barstate session dayofweek dayofmonth month
    year hour minute second weekofyear timenow plot plotshape plotchar hline fill bgcolor barcolor
    alert alertcondition indicator library runtime log max_bars_back fixnan nz ticker currency""".split()
)


def ident(name: str) -> str:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ExportError(f"{name!r} is not a valid Pine identifier (letters, digits, '_', not starting with a digit)")
    if name in RESERVED:
        raise ExportError(f"{name!r} is a Pine keyword or built-in and cannot name a variable; rename it in the strategy")
    return name


def string(text: str) -> str:
    """A double-quoted Pine string literal; control characters are refused."""
    text = str(text)
    if any(ord(c) < 32 and c not in "\t" for c in text):
        raise ExportError(f"string {text!r} contains control characters and cannot be written to Pine")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def number(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        raise ExportError(f"{value!r} cannot be written as a Pine number")
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v)}.0"
    return repr(v)
