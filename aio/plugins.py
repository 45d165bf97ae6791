"""``python -m aio.plugins``: list what is registered, by kind, and where it came from.

Nothing is imported to list it (built-ins are declared by dotted path); only the
indicator family is read from TA-Lib.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from aio.registry import registry

    ap = argparse.ArgumentParser(prog="python -m aio.plugins", description=__doc__)
    ap.add_argument("--kind", help="only this kind")
    ap.add_argument("--plugins-dir", help="also load local plugins from this folder")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    if args.kind and args.kind not in registry.plugins:
        ap.error(f"unknown kind {args.kind!r}; kinds: {', '.join(sorted(registry.plugins))}")
    from aio.errors import AioError

    try:
        registry.ensure_discovered(args.plugins_dir)
        rows = [r for r in registry.table() if not args.kind or r[0] == args.kind]
    except AioError as exc:  # a plugin folder that is missing or a plugin that does not import
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([dict(zip(("kind", "name", "source", "description"), r)) for r in rows], indent=2))
        return 0
    kind = None
    for k, name, source, desc in rows:
        if k != kind:
            print(f"\n{k}:")
            kind = k
        origin = "" if source == "builtin" else f"  [{source}]"
        print(f"  {name:<22} {desc[:70]}{origin}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
