"""The structured answer: its JSON schema, the grammar decoding is constrained to, parsing.

One answer is a compact JSON object with keys in this order::

    {"direction":"up","confidence":0.72,"pattern":"bull_flag","horizon":15,"reason":"higher lows"}

- ``direction``: up, flat or down (the dataset's direction classes);
- ``confidence``: 0..1 with a fixed number of decimals;
- ``pattern``: one name of the configured vocabulary;
- ``horizon``: one of the allowed horizons in bars;
- ``reason``: at most ``reason_max_chars`` characters of plain ASCII text.

The grammar (Lark, for llguidance) accepts exactly the compact serialisation of the
JSON schema's objects, and every string it accepts has a bounded length, so a
decoder given :func:`max_answer_chars` tokens always finishes an answer that
parses. The training targets are rendered with :func:`render_answer`, the same
serialisation, so fine-tuning and constrained decoding agree token for token.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from aio.errors import AioError
from aio.vlm.config import DIRECTIONS, AnswerConfig

# Characters allowed in the reason: letters, digits, space and light punctuation (no quote
# or backslash, so no JSON escapes are ever needed).
REASON_CHARS = "a-zA-Z0-9 ,.;:()%+\\-"
KEYS = ("direction", "confidence", "pattern", "horizon", "reason")


class AnswerError(AioError):
    """A text that is not a valid answer (only possible for unconstrained generation)."""


@dataclass(frozen=True)
class Answer:
    direction: str
    confidence: float
    pattern: str
    horizon: int
    reason: str

    @property
    def direction_class(self) -> int:
        return DIRECTIONS.index(self.direction)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AnswerSpec:
    """The answer vocabulary of one run (patterns, horizons) and its limits."""

    patterns: tuple[str, ...]
    horizons: tuple[int, ...]
    reason_max_chars: int = 80
    confidence_decimals: int = 2

    @classmethod
    def from_config(cls, cfg: AnswerConfig, dataset_horizons: list[int] | None = None) -> "AnswerSpec":
        horizons = cfg.horizons or dataset_horizons or [1]
        return cls(tuple(cfg.patterns), tuple(sorted({int(h) for h in horizons})), cfg.reason_max_chars,
                   cfg.confidence_decimals)


def json_schema(spec: AnswerSpec) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one answer."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ChartAnswer",
        "type": "object",
        "properties": {
            "direction": {"enum": list(DIRECTIONS)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "pattern": {"enum": list(spec.patterns)},
            "horizon": {"enum": list(spec.horizons)},
            "reason": {"type": "string", "maxLength": spec.reason_max_chars, "pattern": f"^[{REASON_CHARS}]*$"},
        },
        "required": list(KEYS),
        "additionalProperties": False,
    }


def _alts(words: list[str]) -> str:
    return " | ".join(json.dumps(w) for w in words)


def lark_grammar(spec: AnswerSpec) -> str:
    """Lark grammar of the compact serialisation (keys in order, no whitespace)."""
    d = spec.confidence_decimals
    lit = lambda s: json.dumps(s)  # noqa: E731  (a Lark string literal is a JSON string)
    return "\n".join([
        "start: " + " ".join([
            lit('{"direction":"'), "DIRECTION", lit('","confidence":'), "CONFIDENCE", lit(',"pattern":"'), "PATTERN",
            lit('","horizon":'), "HORIZON", lit(',"reason":"'), "REASON", lit('"}'),
        ]),
        f"DIRECTION: {_alts(list(DIRECTIONS))}",
        f"CONFIDENCE: /0(\\.[0-9]{{1,{d}}})?|1(\\.0{{1,{d}}})?/",
        f"PATTERN: {_alts(list(spec.patterns))}",
        f"HORIZON: {_alts([str(h) for h in spec.horizons])}",
        f"REASON: /[{REASON_CHARS}]{{0,{spec.reason_max_chars}}}/",
    ]) + "\n"


def max_answer_chars(spec: AnswerSpec) -> int:
    """Length of the longest string the grammar accepts (an upper bound on its tokens)."""
    fixed = len('{"direction":"","confidence":,"pattern":"","horizon":,"reason":""}')
    return (fixed + max(map(len, DIRECTIONS)) + 2 + spec.confidence_decimals
            + max(map(len, spec.patterns)) + max(len(str(h)) for h in spec.horizons) + spec.reason_max_chars)


def render_answer(ans: Answer | dict[str, Any], spec: AnswerSpec) -> str:
    """The compact serialisation the grammar accepts (training targets use it)."""
    a = ans if isinstance(ans, Answer) else Answer(**ans)
    conf = min(1.0, max(0.0, float(a.confidence)))
    text = f"{conf:.{spec.confidence_decimals}f}"
    obj = {"direction": a.direction, "confidence": "@C@", "pattern": a.pattern, "horizon": int(a.horizon),
           "reason": a.reason[: spec.reason_max_chars]}
    out = json.dumps(obj, separators=(",", ":"), ensure_ascii=True).replace('"@C@"', text)
    validate(json.loads(out), spec)
    return out


def validate(obj: Any, spec: AnswerSpec) -> Answer:
    """``obj`` as an :class:`Answer`, or AnswerError naming the first violation."""
    import re

    if not isinstance(obj, dict):
        raise AnswerError(f"answer must be a JSON object, got {type(obj).__name__}")
    if set(obj) != set(KEYS):
        raise AnswerError(f"answer keys {sorted(obj)} differ from {sorted(KEYS)}")
    if obj["direction"] not in DIRECTIONS:
        raise AnswerError(f"direction {obj['direction']!r} is not one of {DIRECTIONS}")
    c = obj["confidence"]
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or not 0 <= c <= 1:
        raise AnswerError(f"confidence {c!r} is not a number in [0, 1]")
    if obj["pattern"] not in spec.patterns:
        raise AnswerError(f"pattern {obj['pattern']!r} is not in the vocabulary")
    h = obj["horizon"]
    if isinstance(h, bool) or not isinstance(h, int) or h not in spec.horizons:
        raise AnswerError(f"horizon {h!r} is not one of {list(spec.horizons)}")
    r = obj["reason"]
    if not isinstance(r, str) or len(r) > spec.reason_max_chars or not re.fullmatch(f"[{REASON_CHARS}]*", r):
        raise AnswerError(f"reason {r!r} is not plain text of at most {spec.reason_max_chars} characters")
    return Answer(obj["direction"], float(c), obj["pattern"], int(h), r)


def parse_answer(text: str, spec: AnswerSpec) -> Answer:
    """Parse one generated answer (strict JSON, no scraping of free text)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnswerError(f"answer is not JSON ({exc.msg} at char {exc.pos}): {text[:120]!r}") from None
    return validate(obj, spec)


def direction_prefix() -> str:
    """The answer text up to the direction value (scoring the three directions continues it)."""
    return '{"direction":"'
