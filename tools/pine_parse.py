"""Parse Pine scripts with pynescript and report their calls as JSON.

Runs inside the isolated tool venv (pynescript needs antlr4 4.13, Hydra pins 4.9),
so it imports nothing from aio. Usage: pine_parse.py FILE... -> JSON on stdout:
[{"file", "ok", "error", "version", "calls": [{"name", "kwargs", "args"}]}]
"""

from __future__ import annotations

import json
import re
import sys


def _name(node) -> str | None:
    cls = type(node).__name__
    if cls == "Name":
        return node.id
    if cls == "Attribute":
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return None


def _src(node) -> str:
    try:
        from pynescript.ast import unparse

        return unparse(node)
    except Exception:
        return type(node).__name__


def analyse(path: str) -> dict:
    from pynescript.ast import parse, walk

    text = open(path, encoding="utf-8").read()
    m = re.search(r"^//@version=(\d+)", text, re.M)
    out = {"file": path, "ok": False, "error": None, "version": int(m.group(1)) if m else None, "calls": []}
    try:
        tree = parse(text)
    except Exception as exc:  # pynescript raises on syntax errors
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    for node in walk(tree):
        if type(node).__name__ == "Call":
            name = _name(node.func)
            kwargs = {a.name: _src(a.value) for a in node.args if getattr(a, "name", None)}
            args = [_src(a.value) for a in node.args if not getattr(a, "name", None)]
            out["calls"].append({"name": name, "kwargs": kwargs, "args": args})
    out["ok"] = True
    return out


if __name__ == "__main__":
    print(json.dumps([analyse(p) for p in sys.argv[1:]]))
