"""Finding and loading a checkpoint: a local folder or the local Hugging Face cache.

A missing model is an error that says how to get it; there is never a fallback to
another model. Remote code runs only when the config says ``trust_remote_code: true``
and the checkpoint is not a class transformers ships.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import structlog

from aio.errors import AioError, ConfigError

log = structlog.get_logger(__name__)

MINICPM_NATIVE = ("minicpmv4_6", "minicpmv4_7")


class ModelNotFoundError(AioError):
    """The checkpoint is neither a local folder nor in the local Hugging Face cache."""


def _how_to_get(name: str) -> str:
    return (
        f"Get it with:  hf download {name}   (older huggingface_hub: huggingface-cli download {name}),\n"
        f"or set model.download=true to let aio fetch it, or point model.name_or_path at a local checkpoint "
        f"folder (one with config.json). aio never falls back to another model."
    )


def resolve_checkpoint(name_or_path: str, revision: str | None = None, download: bool = False) -> Path:
    """The local folder holding ``name_or_path`` (downloaded first only when ``download``)."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelNotFoundError(f"{p} exists but has no config.json, so it is not a transformers checkpoint. "
                                     + _how_to_get(name_or_path))
        return p.resolve()
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or os.sep in name_or_path.replace("/", "")
    if looks_local:
        raise ModelNotFoundError(f"model folder {name_or_path} does not exist. " + _how_to_get(name_or_path))
    from huggingface_hub import constants, snapshot_download

    try:
        folder = snapshot_download(name_or_path, revision=revision, local_files_only=not download)
    except Exception as exc:  # LocalEntryNotFoundError, RepositoryNotFoundError, offline/HTTP errors
        where = constants.HF_HUB_CACHE
        reason = "is not in the local Hugging Face cache" if not download else f"could not be downloaded ({exc})"
        raise ModelNotFoundError(f"model {name_or_path!r} {reason} (cache: {where}). " + _how_to_get(name_or_path)) from exc
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"the cached snapshot of {name_or_path!r} at {folder} is incomplete (no config.json). "
                                 + _how_to_get(name_or_path))
    return folder


def read_config_json(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "config.json").read_text())


def check_family(raw: dict[str, Any], family: str, trust_remote_code: bool, name: str) -> bool:
    """Whether loading needs remote code; raises when the checkpoint does not fit ``family``."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    mt = raw.get("model_type")
    native = mt in CONFIG_MAPPING_NAMES and mt in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    if family == "minicpm_v" and native and mt not in MINICPM_NATIVE:
        raise ConfigError(f"model=minicpm_v got checkpoint {name!r} of model_type {mt!r}; it takes MiniCPM-V "
                          f"({', '.join(MINICPM_NATIVE)}). Use model=hf_vlm for other vision-language models")
    if native:
        return False
    if raw.get("auto_map"):
        if not trust_remote_code:
            hint = (" transformers ships native MiniCPM-V 4.6/4.7 classes: use openbmb/MiniCPM-V-4_6 (no remote code)."
                    if family == "minicpm_v" else "")
            raise ConfigError(
                f"checkpoint {name!r} (model_type {mt!r}) is not a class transformers ships and needs the code in the "
                f"checkpoint itself.{hint} To run that code set model.trust_remote_code=true (only for checkpoints you trust)"
            )
        return True
    raise ConfigError(
        f"checkpoint {name!r} has model_type {mt!r}, which transformers {_tf_version()} cannot load as an image-text-"
        f"to-text model; upgrade transformers or pick a supported checkpoint"
    )


def _tf_version() -> str:
    import transformers

    return transformers.__version__


def _torchvision_ok() -> bool:
    try:
        import torchvision  # noqa: F401

        return True
    except Exception:  # absent, or a build that does not match torch
        return False


def load_processor(path: Path, raw: dict[str, Any], trust_remote_code: bool) -> Any:
    """The checkpoint's processor (tokenizer + image processor + chat template)."""
    from transformers import AutoProcessor

    mt = raw.get("model_type")
    if mt in MINICPM_NATIVE and not _torchvision_ok():
        return image_only_minicpm_processor(path)
    proc = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    if not hasattr(proc, "tokenizer") or not hasattr(proc, "image_processor"):
        raise AioError(f"{path} has no image processor next to its tokenizer (processor_config.json / "
                       f"preprocessor_config.json missing?): it is not a vision-language checkpoint")
    return proc


def image_only_minicpm_processor(path: Path) -> Any:
    """MiniCPM-V's own processor class, for images only, on the PIL image backend.

    transformers' MiniCPM-V processor also holds a video processor, which needs
    torchvision; charts are never videos, so without torchvision the processor is built
    with a placeholder that refuses videos. Text and image handling is the real class.
    """
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.models.minicpmv4_6.processing_minicpmv4_6 import MiniCPMV4_6Processor
    from transformers.video_processing_utils import VideoProcessorMixin

    class NoVideoProcessor(VideoProcessorMixin):
        slice_mode = False
        downsample_mode = "16x"

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise AioError("this MiniCPM-V processor was built without torchvision and takes images only")

    class ImageOnlyMiniCPMVProcessor(MiniCPMV4_6Processor):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor":
                return VideoProcessorMixin
            return super().check_argument_for_proper_class(argument_name, argument)

    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = AutoImageProcessor.from_pretrained(path, backend="pil")
    video = NoVideoProcessor()
    video.downsample_mode = image_processor.downsample_mode
    chat_template = getattr(tokenizer, "chat_template", None)
    for name in ("chat_template.jinja", "chat_template.json"):
        f = path / name
        if f.is_file():
            text = f.read_text()
            chat_template = json.loads(text)["chat_template"] if name.endswith(".json") else text
            break
    log.info("minicpm processor built without torchvision (images only, PIL backend)", path=str(path))
    return ImageOnlyMiniCPMVProcessor(image_processor=image_processor, video_processor=video, tokenizer=tokenizer,
                                      chat_template=chat_template)


def load_model(path: Path, raw: dict[str, Any], plan: Any, trust_remote_code: bool,
               attn_implementation: str | None = None) -> Any:
    """The model with the plan's dtype, quantisation and device."""
    import torch
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {"dtype": getattr(torch, plan.dtype), "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if plan.quantization in ("4bit", "8bit"):
        kwargs["quantization_config"] = bnb_config(plan.quantization, plan.dtype)
    if plan.device == "cuda":
        kwargs["device_map"] = {"": 0}
    model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    if plan.device != "cuda":
        model.to(plan.device)
    return model


def bnb_config(quantization: str, compute_dtype: str) -> Any:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise AioError(f"{quantization} base weights need bitsandbytes on a CUDA GPU: pip install 'aio[vlm-gpu]' "
                       f"(or pip install bitsandbytes), or set model.memory.quantization=none") from exc
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=getattr(torch, compute_dtype))
    return BitsAndBytesConfig(load_in_8bit=True)


def checkpoint_size(path: Path) -> tuple[int, int]:
    """(parameter count, bytes on disk) of a checkpoint from its safetensors headers (no weights read)."""
    import struct

    n_params = 0
    n_bytes = 0
    files = sorted(Path(path).glob("*.safetensors"))
    sizes = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
             "F8_E4M3": 1, "F8_E5M2": 1}
    for f in files:
        with open(f, "rb") as fh:
            (hlen,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(hlen))
        for k, v in header.items():
            if k == "__metadata__":
                continue
            count = 1
            for d in v["shape"]:
                count *= int(d)
            n_params += count
            n_bytes += count * sizes.get(v["dtype"], 2)
    return n_params, n_bytes
