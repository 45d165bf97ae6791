"""Vision-language model plugins on tiny random checkpoints built from config (no downloads).

The tiny MiniCPM-V 4.6 and Idefics3/SmolVLM checkpoints are saved with save_pretrained
and loaded back through the same code as real ones. Outside references: the answers
are validated with the ``jsonschema`` library, the answer-only loss is checked
against transformers' own loss, the memory plan against hand arithmetic.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

# The VLM stack is a declared dependency (aio[vlm], installed by CI): imported plainly so a
# broken install fails here instead of skipping these tests silently.
import llguidance  # noqa: E402,F401
import peft  # noqa: E402,F401
import transformers  # noqa: E402,F401

import torch  # noqa: E402

from aio.errors import ConfigError  # noqa: E402
from aio.vlm.config import HFVLMConfig, MiniCPMVConfig  # noqa: E402
from aio.vlm.schema import Answer, AnswerError, AnswerSpec, json_schema, parse_answer, render_answer  # noqa: E402

FAMILIES = {"minicpm_v": ("minicpm_v", MiniCPMVConfig), "idefics3": ("hf_vlm", HFVLMConfig)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from aio.vlm.tiny import build_tiny

    root = tmp_path_factory.mktemp("tiny_vlm")
    return {k: build_tiny(k, root / k, seed=0) for k in FAMILIES}


def charts(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((40 + 8 * i, 56, 3)) * 255).astype(np.uint8) for i in range(n)]


def make_vlm(checkpoints, kind: str, training: bool = False, **over):
    from aio.config import build
    from aio.vlm.model import ChartVLM

    family, cls = FAMILIES[kind]
    cfg = build(cls, {"name_or_path": str(checkpoints[kind]), **over}, "model")
    if training:
        cfg.train.batch_size, cfg.train.grad_accum = 2, 1
    spec = AnswerSpec.from_config(cfg.answer, [5, 15, 60])
    return ChartVLM(cfg, family, spec, training=training)


@pytest.fixture(scope="module")
def vlms(checkpoints):
    return {k: make_vlm(checkpoints, k) for k in FAMILIES}


# -- loading ----------------------------------------------------------------------------


def test_tiny_checkpoints_load_through_the_native_classes(vlms):
    m, i = vlms["minicpm_v"], vlms["idefics3"]
    assert type(m.model).__name__ == "MiniCPMV4_6ForConditionalGeneration"
    assert type(i.model).__name__ == "Idefics3ForConditionalGeneration"
    assert isinstance(m.processor, __import__("transformers").MiniCPMV4_6Processor)
    assert type(i.processor).__name__ == "Idefics3Processor"
    # The chat templates decide what surrounds an answer: ChatML ends with <|im_end|>,
    # SmolVLM puts a space after "Assistant:" and ends with <end_of_utterance>.
    assert (m.parts.lead, m.parts.end_text) == ("", "<|im_end|>")
    assert (i.parts.lead, i.parts.end_text) == (" ", "<end_of_utterance>")
    assert i.processor.tokenizer.convert_tokens_to_ids("<end_of_utterance>") in i.end_ids


def test_a_missing_model_says_how_to_get_it_and_never_falls_back(tmp_path, monkeypatch):
    from aio.vlm.loading import ModelNotFoundError, resolve_checkpoint

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as e:
        resolve_checkpoint("aio-tests/no-such-vlm-xyz")
    msg = str(e.value)
    assert "hf download aio-tests/no-such-vlm-xyz" in msg and "never falls back" in msg
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "nowhere" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_checkpoint(str(tmp_path / "empty"))


def test_family_and_remote_code_checks(checkpoints):
    from aio.vlm.loading import check_family, read_config_json

    idefics = read_config_json(checkpoints["idefics3"])
    with pytest.raises(ConfigError, match="model=hf_vlm"):
        check_family(idefics, "minicpm_v", False, "x")
    assert check_family(read_config_json(checkpoints["minicpm_v"]), "minicpm_v", False, "x") is False
    old = {"model_type": "minicpmv", "auto_map": {"AutoModel": "modeling_minicpmv.MiniCPMV"}}
    with pytest.raises(ConfigError, match="trust_remote_code=true"):
        check_family(old, "minicpm_v", False, "openbmb/MiniCPM-V-2_6")
    assert check_family(old, "minicpm_v", True, "openbmb/MiniCPM-V-2_6") is True


# -- structured output ------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(FAMILIES))
def test_constrained_generation_yields_schema_valid_json(vlms, kind):
    import jsonschema

    vlm = vlms[kind]
    schema = json_schema(vlm.spec)
    texts = vlm.generate_texts(charts(3), constrained=True)
    for t in texts:
        obj = json.loads(t)
        jsonschema.validate(obj, schema)  # outside reference validator
        assert list(obj) == ["direction", "confidence", "pattern", "horizon", "reason"]
    answers = vlm.analyze(charts(2))
    assert all(isinstance(a, Answer) and a.direction in ("down", "flat", "up") for a in answers)


def test_sampled_constrained_answers_stay_valid_and_unconstrained_ones_do_not(vlms):
    import jsonschema

    vlm = vlms["idefics3"]
    g = vlm.cfg.generation
    g.do_sample, g.temperature = True, 2.0  # hot sampling wanders over the whole grammar
    try:
        torch.manual_seed(1)
        for t in vlm.generate_texts(charts(4, seed=3), constrained=True):
            jsonschema.validate(json.loads(t), json_schema(vlm.spec))
    finally:
        g.do_sample, g.temperature = False, 1.0
    # The same random model without the grammar writes no answer: only the constraint makes them parse.
    bad = 0
    for t in vlm.generate_texts(charts(2), constrained=False):
        try:
            parse_answer(t, vlm.spec)
        except AnswerError:
            bad += 1
    assert bad == 2


def test_grammar_accepts_rendered_answers_and_rejects_others(vlms):
    import llguidance

    vlm = vlms["minicpm_v"]
    gt = vlm.grammar_tokenizer
    tok = vlm.processor.tokenizer

    def accepted(text: str) -> bool:
        m = gt.matcher(vlm.grammar)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return m.validate_tokens(ids) == len(ids) and (m.consume_tokens(ids) and m.is_accepting())

    good = render_answer(Answer("flat", 0.5, "double_top", 60, "ranging regime, flat closes"), vlm.spec)
    assert good == '{"direction":"flat","confidence":0.50,"pattern":"double_top","horizon":60,"reason":"ranging regime, flat closes"}'
    assert accepted(good)
    assert not accepted(good.replace("0.50", "1.50"))
    assert not accepted(good.replace("double_top", "cup_and_handle"))
    assert not accepted(good.replace('"horizon":60', '"horizon":7'))
    assert not accepted(good.replace('{"direction"', '{ "direction"'))
    assert isinstance(llguidance.__version__, str)
    with pytest.raises(AnswerError, match="confidence"):
        parse_answer(good.replace("0.50", "1.5"), vlm.spec)


# -- scoring and training ---------------------------------------------------------------


def test_answer_only_loss_equals_transformers_loss(vlms):
    vlm = vlms["idefics3"]
    ans = [render_answer(Answer(d, 0.7, "uptrend", 15, "trending regime"), vlm.spec) for d in ("up", "down")]
    batch = vlm.training_batch(charts(2), [vlm.fill()] * 2, ans)
    n_answer = (batch["labels"] != -100).sum(1)
    answer_ids = [len(vlm.processor.tokenizer(a + vlm.parts.end_text, add_special_tokens=False)["input_ids"]) for a in ans]
    assert n_answer.tolist() == answer_ids
    with torch.no_grad():
        ours = vlm.answer_loss(batch)
        ref = vlm.model(**batch).loss  # transformers' own shifted cross-entropy over labels != -100
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_direction_logits_are_the_continuations_log_likelihoods(vlms):
    vlm = vlms["minicpm_v"]
    lg = vlm.direction_logits(charts(2))
    assert lg.shape == (2, 3) and np.isfinite(lg).all() and (lg < 0).all()
    # One chart scored alone gives the same numbers as in a batch (padding does not leak).
    alone = vlm.direction_logits(charts(2)[1:])
    np.testing.assert_allclose(alone[0], lg[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", list(FAMILIES))
def test_one_lora_step_changes_only_adapter_weights_and_roundtrips(checkpoints, kind, tmp_path):
    from aio.vlm.lora import adapter_state
    from aio.vlm.train import fit_adapter

    vlm = make_vlm(checkpoints, kind, training=True, finetune="lora")
    vlm.cfg.lora.r, vlm.cfg.lora.alpha, vlm.cfg.lora.dropout = 4, 8, 0.0
    vlm.enable_lora()
    assert vlm.plan.gradient_checkpointing and vlm.model.is_activation_checkpointing
    trainable = {n for n, p in vlm.peft.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(("language_model" in n or "text_model" in n) for n in trainable)  # vision tower stays frozen
    before = {k: v.clone() for k, v in vlm.model.state_dict().items()}
    id_before = vlm.model_id
    ans = [render_answer(Answer("up", 0.8, "uptrend", 15, "trending regime"), vlm.spec)] * 2
    stats = fit_adapter(vlm, charts(2), [vlm.fill()] * 2, ans, vlm.cfg.train, max_steps=1)
    assert stats["steps"] == 1 and math.isfinite(stats["first_loss"])
    after = vlm.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("lora_" in k for k in changed)
    assert vlm.model_id != id_before  # the id is the adapter's hash

    folder = vlm.save_adapter(tmp_path / "adapter")
    saved = json.loads((folder / "aio_model.json").read_text())
    assert saved["model_id"] == vlm.model_id
    fresh = make_vlm(checkpoints, kind)
    fresh.load_adapter(folder)
    a, b = adapter_state(vlm.peft), adapter_state(fresh.peft)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-exact
    assert fresh.model_id == vlm.model_id
    x = charts(2, seed=9)
    ref = vlm.direction_logits(x)
    np.testing.assert_array_equal(fresh.direction_logits(x), ref)
    fresh.merge_adapter()
    assert fresh.peft is None and fresh.model_id == vlm.model_id
    np.testing.assert_allclose(fresh.direction_logits(x), ref, rtol=1e-4, atol=1e-4)


# -- embeddings -------------------------------------------------------------------------


def test_embeddings_have_the_configured_shape_and_go_into_the_library(vlms, checkpoints, tmp_path):
    from aio.store import PatternLibrary, PatternRecord

    native = vlms["minicpm_v"].embed(charts(3))
    assert native.shape == (3, 32) and native.dtype == np.float32  # tiny vision tower width
    np.testing.assert_allclose(np.linalg.norm(native, axis=1), 1.0, rtol=1e-5)
    idef = vlms["idefics3"].embed(charts(3))
    assert idef.shape == (3, 32)
    vlm = make_vlm(checkpoints, "minicpm_v", embedding={"dim": 16, "seed": 3})
    e = vlm.embed(charts(3))
    assert e.shape == (3, 16) and vlm.embedding_dim == 16
    np.testing.assert_array_equal(vlm.embed(charts(3)), e)  # deterministic projection
    lib = PatternLibrary(tmp_path / "lib")
    recs = [PatternRecord(embedding=v, model_id=vlm.model_id, symbol="EURUSD", timeframe="1m", ts_init=10**18 + i,
                          label_end_ts=10**18 + i + 60, fwd_return=0.0, label=0, horizon_bars=15) for i, v in enumerate(e)]
    lib.add_patterns(recs)
    assert lib.count_patterns({"model_id": vlm.model_id}) == 3 and lib.dim == 16
    res = lib.search(e[1], k=1)
    assert int(res.neighbors["ts_init"][0]) == 10**18 + 1


# -- configs and registry -----------------------------------------------------------------


def test_configs_validate_and_plugins_register():
    from aio.config import build
    from aio.registry import Registry

    with pytest.raises(ConfigError, match="qlora"):
        build(MiniCPMVConfig, {"finetune": "qlora", "memory": {"quantization": "none"}}, "model")
    with pytest.raises(ConfigError, match="model.lora.rank"):
        build(HFVLMConfig, {"lora": {"rank": 4}}, "model")
    with pytest.raises(ConfigError, match="patterns"):
        build(HFVLMConfig, {"answer": {"patterns": ["a", "a"]}}, "model")
    reg = Registry()
    reg.ensure_discovered()
    assert {"minicpm_v", "hf_vlm"} <= set(reg.names("model"))
    cfg = build(reg.get_plugin("model", "minicpm_v").config, {"name_or_path": "openbmb/MiniCPM-V-4_6", "lora": {"r": 16}}, "model")
    assert cfg.lora.r == 16 and cfg.name == "minicpm_v"
