"""Tiny random-weight checkpoints built from config, for tests and CPU benchmarks.

They are saved with ``save_pretrained`` exactly like real checkpoints (config.json,
safetensors, tokenizer.json, processor config, chat template) and loaded back through
the same code as ``openbmb/MiniCPM-V-4_6`` or ``HuggingFaceTB/SmolVLM-256M-Instruct``.
The tokenizer is a byte-level BPE trained in milliseconds on prompt and answer text,
so any string tokenizes; the weights are random, so only constrained decoding makes
their answers parse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aio.vlm.config import DEFAULT_PATTERNS, PromptConfig

KINDS = ("minicpm_v", "idefics3")

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|image_pad|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# SmolVLM-Instruct's template layout.
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'] is string %}{{': ' + message['content']}}{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _corpus() -> list[str]:
    p = PromptConfig()
    answers = [
        '{"direction":"%s","confidence":0.%d5,"pattern":"%s","horizon":%d,"reason":"%s regime, higher lows"}'
        % (d, i % 10, pat, h, reg)
        for i, (d, pat, h, reg) in enumerate(
            (d, pat, h, reg) for d in ("up", "flat", "down") for pat in DEFAULT_PATTERNS for h in (5, 15, 60)
            for reg in ("trending", "ranging", "volatile", "quiet"))
    ]
    return [p.system or "", p.user, "user assistant system User Assistant EURUSD 1m 5m 1h"] + answers


def tiny_tokenizer(specials: list[str], named: dict[str, str], vocab_size: int = 512) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def build_tiny_minicpm_v(folder: str | Path, seed: int = 0) -> Path:
    """MiniCPM-V 4.6 layout (SigLIP-style NaViT vision tower + window merger, Qwen3.5 text), ~0.2M weights."""
    import torch
    from transformers import MiniCPMV4_6Config, MiniCPMV4_6ForConditionalGeneration
    from transformers.models.minicpmv4_6.image_processing_pil_minicpmv4_6 import MiniCPMV4_6ImageProcessorPil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>", "<image>", "</image>", "<slice>", "</slice>",
                "<image_id>", "</image_id>", "<|image_pad|>", "<|video_pad|>"]
    tok = tiny_tokenizer(specials, dict(
        eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>", image_token="<|image_pad|>",
        video_token="<|video_pad|>", image_start_token="<image>", image_end_token="</image>",
        slice_start_token="<slice>", slice_end_token="</slice>", image_id_start_token="<image_id>",
        image_id_end_token="</image_id>"))
    tok.chat_template = CHATML_TEMPLATE
    vocab = len(tok)
    cfg = MiniCPMV4_6Config(
        text_config=dict(
            model_type="qwen3_5_text", vocab_size=vocab, hidden_size=64, head_dim=16, intermediate_size=96,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_act="silu",
            max_position_embeddings=2048, rope_parameters={"type": "default", "rope_theta": 10000, "mrope_section": [2, 1, 1]},
            tie_word_embeddings=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            layer_types=["full_attention", "linear_attention"], linear_conv_kernel_dim=2, linear_key_head_dim=16,
            linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           image_size=64, patch_size=8),
        image_token_id=tok.image_token_id, video_token_id=tok.video_token_id, image_size=64, insert_layer_id=0)
    torch.manual_seed(seed)
    model = MiniCPMV4_6ForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    img = MiniCPMV4_6ImageProcessorPil(scale_resolution=64, max_slice_nums=1, slice_mode=False, patch_size=8)
    img_dict = img.to_dict()
    img_dict["image_processor_type"] = "MiniCPMV4_6ImageProcessor"
    video = {k: img_dict[k] for k in ("scale_resolution", "max_slice_nums", "patch_size", "downsample_mode",
                                      "image_mean", "image_std")}
    video.update(slice_mode=False, video_processor_type="MiniCPMV4_6VideoProcessor")
    (folder / "processor_config.json").write_text(json.dumps(
        {"processor_class": "MiniCPMV4_6Processor", "image_processor": img_dict, "video_processor": video}, indent=2))
    (folder / "chat_template.jinja").write_text(CHATML_TEMPLATE)
    return folder


def build_tiny_idefics3(folder: str | Path, seed: int = 0) -> Path:
    """SmolVLM / Idefics3 layout (SigLIP vision tower, pixel-shuffle connector, Llama text), ~0.2M weights."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = (["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<unk>", "<fake_token_around_image>", "<image>",
                 "<global-img>"] + [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)])
    tok = tiny_tokenizer(specials, dict(eos_token="<end_of_utterance>", pad_token="<|endoftext|>", unk_token="<unk>",
                                        bos_token="<|im_start|>"))
    vocab = len(tok)
    cfg = Idefics3Config(
        text_config=dict(model_type="llama", vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         tie_word_embeddings=False),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    img = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    proc = Idefics3Processor(image_processor=img, tokenizer=tok, image_seq_len=4, chat_template=SMOLVLM_TEMPLATE)
    proc.save_pretrained(folder)
    return folder


def build_tiny(kind: str, folder: str | Path, seed: int = 0) -> Path:
    if kind == "minicpm_v":
        return build_tiny_minicpm_v(folder, seed)
    if kind == "idefics3":
        return build_tiny_idefics3(folder, seed)
    raise ValueError(f"tiny checkpoint kind must be one of {KINDS}, got {kind!r}")
