"""Parse Pine scripts with pynescript and report their calls as JSON.

Runs inside the isolated tool venv (pynescript needs antlr4 4.13, Hydra pins 4.9),
so it imports nothing from aio. Usage: pine_parse.py FILE... -> JSON on stdout:
[{"file", "ok", "error", "version", "calls": [{"name", "kwargs", "args"}]}]

``pine_parse.py --ast FILE...`` emits the whole syntax tree instead (for the importer,
aio.pine.importer): [{"file", "ok", "error", "error_line", "error_col", "version", "ast"}],
every node a dict {"_type": class name, its fields..., "lineno", "col_offset", ...};
``col_offset`` is pynescript's byte offset into the UTF-8 line.
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


def to_json(node):
    """A pynescript node (or list/constant) as plain JSON data."""
    if isinstance(node, list):
        return [to_json(n) for n in node]
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    out = {"_type": type(node).__name__}
    for f in getattr(node, "_fields", ()):
        out[f] = to_json(getattr(node, f, None))
    for a in getattr(node, "_attributes", ()):
        out[a] = getattr(node, a, None)
    return out


def syntax_tree(path: str) -> dict:
    from pynescript.ast import parse

    text = open(path, encoding="utf-8").read()
    m = re.search(r"^//@version=(\d+)", text, re.M)
    out = {"file": path, "ok": False, "error": None, "error_line": None, "error_col": None,
           "version": int(m.group(1)) if m else None, "ast": None}
    try:
        tree = parse(text)
    except Exception as exc:
        details = getattr(exc, "details", None)
        out["error"] = str(getattr(exc, "message", None) or exc).splitlines()[0]
        out["error_line"] = getattr(details, "lineno", None)
        out["error_col"] = getattr(details, "offset", None)
        return out
    out["ast"] = to_json(tree)
    out["ok"] = True
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ast"]:
        print(json.dumps([syntax_tree(p) for p in sys.argv[2:]]))
    else:
        print(json.dumps([analyse(p) for p in sys.argv[1:]]))
