"""Constrained decoding with llguidance: a transformers LogitsProcessor that only lets
through tokens the answer grammar can continue with.

One ``LLMatcher`` per batch row follows the tokens generated so far; before each step
it computes the allowed-token bitmask and every other logit becomes -inf. When the
grammar is complete only the end tokens remain, so ``generate`` stops on its own. A
row that already finished (or is padding after its end) is held to the end tokens.

llguidance (Rust, ~3 MB wheel, no dependencies) was picked over xgrammar (pulls in
triton) and outlines (many dependencies); it reads the tokenizer's own
``tokenizer.json`` so the masks match the model's vocabulary exactly.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from aio.errors import AioError


def _llg():
    try:
        import llguidance
        import llguidance.hf
        import llguidance.numpy
    except ImportError as exc:  # pragma: no cover - the vlm extra installs it
        raise AioError("constrained decoding needs llguidance: pip install 'aio[vlm]' (or pip install llguidance)") from exc
    return llguidance


class GrammarTokenizer:
    """llguidance's view of a Hugging Face fast tokenizer (built once per model: ~ms to 1 s)."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int, end_ids: Sequence[int]) -> None:
        llg = _llg()
        tok = getattr(hf_tokenizer, "tokenizer", hf_tokenizer)  # a processor carries its tokenizer
        if not hasattr(tok, "backend_tokenizer"):
            raise AioError(f"constrained decoding needs a fast (tokenizers) tokenizer; {type(tok).__name__} is not one")
        self.vocab_size = int(vocab_size)
        self.end_ids = sorted({int(i) for i in end_ids})
        self.ll = llg.hf.from_tokenizer(tok, n_vocab=self.vocab_size, eos_token=self.end_ids)

    def matcher(self, grammar: str) -> Any:
        llg = _llg()
        m = llg.LLMatcher(self.ll, grammar, log_level=0)
        if m.is_error():
            raise AioError(f"the answer grammar does not compile: {m.get_error()}")
        return m


def lark_to_grammar(lark: str) -> str:
    return _llg().LLMatcher.grammar_from_lark(lark)


def bitmask_to_bool(mask: np.ndarray, vocab_size: int) -> np.ndarray:
    """(B, ceil(V/32)) int32 llguidance bitmask -> (B, V) bool allowed-token mask (bit i of word w: token 32w+i)."""
    return np.unpackbits(np.ascontiguousarray(mask).view(np.uint8), axis=1, bitorder="little")[:, :vocab_size].astype(bool)


class GrammarLogitsProcessor:
    """``generate(..., logits_processor=LogitsProcessorList([GrammarLogitsProcessor(...)]))``.

    Create a fresh one per ``generate`` call (it keeps per-row matcher state). Masks of
    all rows are computed in parallel by llguidance's executor (Rust threads).
    """

    def __init__(self, tokenizer: GrammarTokenizer, grammar: str, batch_size: int) -> None:
        llg = _llg()
        self.tok = tokenizer
        self.grammar = grammar
        self.matchers = [tokenizer.matcher(grammar) for _ in range(batch_size)]
        self.prompt_len: int | None = None
        self.done = [False] * batch_size
        self._mask = llg.numpy.allocate_token_bitmask(batch_size, tokenizer.vocab_size)
        self._exec = llg.LLExecutor()
        self._end = set(tokenizer.end_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        lln = _llg().numpy
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        elif input_ids.shape[1] > self.prompt_len:
            last = input_ids[:, -1].tolist()  # one new token per row since the previous call
            for b, m in enumerate(self.matchers):
                if self.done[b]:
                    continue
                t = last[b]
                if t in self._end or m.is_stopped():
                    self.done[b] = True
                elif not m.consume_token(t):
                    raise AioError(f"constrained decoding: row {b} took token {t} the grammar rejects ({m.get_error()})")
        active = [(m, b) for b, m in enumerate(self.matchers) if not self.done[b]]
        if active:
            lln.fill_next_token_bitmask_par(self._exec, active, self._mask)
        allowed = bitmask_to_bool(self._mask, self.tok.vocab_size)
        for b in range(len(self.matchers)):
            if self.done[b]:  # finished rows may only repeat an end token (generate pads them anyway)
                allowed[b] = False
                allowed[b, self.tok.end_ids] = True
        v = min(scores.shape[1], allowed.shape[1])
        keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        keep[:, :v] = torch.from_numpy(allowed[:, :v]).to(scores.device)
        return scores.masked_fill(~keep, float("-inf"))
