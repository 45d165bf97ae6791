"""Chat prompts and their tokenisation for generation, scoring and training.

A prompt is the checkpoint's own chat template applied to [system], user(image, text),
with the generation prompt added. ``answer_lead`` is what the template puts between
that and an assistant answer (SmolVLM: a space), ``end_text`` what it puts after one
(``<|im_end|>``, ``<end_of_utterance>``...). Training rows are
``prompt ids + ids(lead + answer + end)`` with labels only on the second part; the
scorer and the decoder continue from the same prompt ids, so all three agree on
tokenisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from aio.errors import AioError
from aio.vlm.config import PromptConfig

IGNORE = -100
_PROBE = "XQZJSONX"


def messages(prompt: PromptConfig, fill: Mapping[str, Any], answer: str | None = None) -> list[dict[str, Any]]:
    try:
        user = prompt.user.format(**fill)
    except KeyError as exc:
        raise AioError(f"config key model.prompt.user uses {{{exc.args[0]}}}, which is not one of: "
                       f"{', '.join(sorted(fill))}") from None
    msgs: list[dict[str, Any]] = []
    if prompt.system:
        msgs.append({"role": "system", "content": [{"type": "text", "text": prompt.system}]})
    msgs.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user}]})
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


@dataclass(frozen=True)
class TemplateParts:
    lead: str  # between the generation prompt and the answer
    end_text: str  # after the answer (end of turn), trailing whitespace stripped


def template_parts(processor: Any, prompt: PromptConfig) -> TemplateParts:
    fill = {"patterns": "", "horizon": 1, "symbol": "", "timeframe": ""}
    gen = processor.apply_chat_template([messages(prompt, fill)], add_generation_prompt=True, tokenize=False)[0]
    full = processor.apply_chat_template([messages(prompt, fill, _PROBE)], tokenize=False)[0]
    if not full.startswith(gen) or _PROBE not in full[len(gen):]:
        # Templates that re-render earlier turns differently: fall back to the plain answer after the prompt.
        cut = full.find(_PROBE)
        if cut < 0:
            raise AioError("the checkpoint's chat template drops assistant text; it cannot be fine-tuned with aio")
        return TemplateParts("", full[cut + len(_PROBE):].rstrip())
    rest = full[len(gen):]
    i = rest.index(_PROBE)
    return TemplateParts(rest[:i], rest[i + len(_PROBE):].rstrip())


def prompt_texts(processor: Any, prompt: PromptConfig, fills: Sequence[Mapping[str, Any]], lead: str) -> list[str]:
    convs = [messages(prompt, f) for f in fills]
    texts = processor.apply_chat_template(convs, add_generation_prompt=True, tokenize=False)
    return [t + lead for t in texts]


def _image_keys(enc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")}


def encode_prompts(processor: Any, images: Sequence[Any], texts: Sequence[str]) -> dict[str, Any]:
    """Left-padded prompts with their images (for ``generate``)."""
    tok = processor.tokenizer
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        enc = processor(text=list(texts), images=[[im] for im in images], return_tensors="pt", padding=True)
    finally:
        tok.padding_side = side
    return dict(enc)


def _pad_right(rows: list[list[int]], pad: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def encode_with_continuations(processor: Any, images: Sequence[Any], texts: Sequence[str],
                              continuations: Sequence[str], max_seq_len: int | None = None) -> dict[str, Any]:
    """Right-padded ``prompt ids + ids(continuation)``; ``labels`` cover the continuation only."""
    enc = encode_prompts(processor, images, texts)
    tok = processor.tokenizer
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()
    rows, labels = [], []
    for i, cont in enumerate(continuations):
        p = ids[i][mask[i]].tolist()
        c = tok(cont, add_special_tokens=False)["input_ids"]
        if max_seq_len is not None and len(p) + len(c) > max_seq_len:
            raise AioError(f"a training row has {len(p) + len(c)} tokens ({len(p)} prompt incl. image, {len(c)} answer) "
                           f"> max_seq_len={max_seq_len}: raise model.train.max_seq_len or lower model.image_size")
        rows.append(p + c)
        labels.append([IGNORE] * len(p) + c)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    input_ids = _pad_right(rows, pad)
    lab = _pad_right(labels, IGNORE)
    attn = torch.arange(input_ids.shape[1])[None, :] < torch.tensor([len(r) for r in rows])[:, None]
    out = {"input_ids": input_ids, "attention_mask": attn.long(), "labels": lab}
    out.update(_image_keys(enc))
    return out


def end_token_ids(processor: Any, end_text: str, model_eos: Any) -> list[int]:
    """Tokens that end an answer: the first token of the end-of-turn text and the model's EOS."""
    tok = processor.tokenizer
    ids: set[int] = set()
    if end_text:
        e = tok(end_text, add_special_tokens=False)["input_ids"]
        if e:
            ids.add(int(e[0]))
    for x in (model_eos if isinstance(model_eos, (list, tuple)) else [model_eos]):
        if x is not None:
            ids.add(int(x))
    if tok.eos_token_id is not None:
        ids.add(int(tok.eos_token_id))
    if not ids:
        raise AioError("the checkpoint defines no end-of-turn or EOS token; answers could not end")
    return sorted(ids)


def to_pil(img: Any, size: int | None = None) -> Any:
    """A chart (PNG bytes, HxWx3 uint8 array or PIL image) as an RGB PIL image fitting ``size``."""
    from PIL import Image

    if isinstance(img, (bytes, bytearray)):
        import io

        im = Image.open(io.BytesIO(img)).convert("RGB")
    elif isinstance(img, np.ndarray):
        im = Image.fromarray(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    elif isinstance(img, torch.Tensor):
        arr = img.detach().cpu()
        if arr.dtype.is_floating_point:
            arr = (arr.clamp(0, 1) * 255).round().to(torch.uint8)
        if arr.shape[0] in (1, 3, 4) and arr.ndim == 3:
            arr = arr.permute(1, 2, 0)
        im = Image.fromarray(arr.numpy()[..., :3])
    else:
        im = img.convert("RGB")
    if size and max(im.size) != size:
        scale = size / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BICUBIC)
    return im
