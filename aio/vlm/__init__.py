"""Vision-language models on chart images: ``minicpm_v`` and ``hf_vlm`` (kind ``model``).

    model = registry.get("model", "minicpm_v")(MiniCPMVConfig(name_or_path="openbmb/MiniCPM-V-4_6"))
    result = model.fit(ctx)                  # walk-forward, optional LoRA per fold, calibrated
    run.predictions.update(result.bar_series(len(bars)))

    vlm = ChartVLM(cfg, "hf_vlm", spec)      # one checkpoint
    vlm.analyze([png])                       # schema-valid JSON answers (constrained decoding)

Importing this package is light (configs only); torch, transformers, peft and
llguidance load when a model is built. See docs/vlm.md.
"""

from __future__ import annotations

from aio.vlm.config import HFVLMConfig, MiniCPMVConfig, VLMConfig

__all__ = ["HFVLMConfig", "MiniCPMVConfig", "VLMConfig", "make_hf_vlm", "make_minicpm_v", "register"]


def make_minicpm_v(config: MiniCPMVConfig):
    """MiniCPM-V 4.6/4.7 (transformers' native classes): structured chart analysis, LoRA, embeddings."""
    from aio.vlm.plugin import MiniCPMVModel

    return MiniCPMVModel(config)


def make_hf_vlm(config: HFVLMConfig):
    """Any AutoModelForImageTextToText checkpoint (SmolVLM, Idefics3, Qwen2.5/3-VL, LLaVA...)."""
    from aio.vlm.plugin import HFVLMModel

    return HFVLMModel(config)


def register(registry) -> None:
    registry.add("model", "minicpm_v", make_minicpm_v, config=MiniCPMVConfig,
                 description="MiniCPM-V 4.6/4.7 on chart images: JSON answers, LoRA, vision embeddings")
    registry.add("model", "hf_vlm", make_hf_vlm, config=HFVLMConfig,
                 description="any Hugging Face image-text-to-text model on chart images: JSON answers, LoRA")
