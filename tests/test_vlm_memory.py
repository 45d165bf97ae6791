"""GPU memory planning as a pure function of given numbers (no GPU needed)."""

from __future__ import annotations

import math

import pytest

from aio.vlm.memory import GiB, MemoryPlanError, ModelShape, plan_memory

SHAPE_2B = ModelShape(n_params=2_000_000_000, hidden=2048, layers=24, vocab=150_000,
                      trainable_params=2 * 16 * 2048 * 4 * 24)
SHAPE_8B = ModelShape(n_params=8_000_000_000, hidden=4096, layers=32, vocab=150_000)


def test_lora_plan_matches_hand_arithmetic():
    p = plan_memory(SHAPE_2B, 24 * GiB, device="cuda", training=True, needed_seq_len=600, answer_tokens=150)
    # By hand, following the documented estimates:
    budget = 24 * GiB * 0.9 - 0.5 * GiB
    weights = 2e9 * 2 * 1.05  # bf16 + 5%
    state = SHAPE_2B.trainable_params * 16  # fp32 master, grad, two Adam moments
    per_token = 24 * 2048 * 2 + 34 * 2048  # checkpointed layer inputs + one recomputed layer
    sample = 600 * per_token + 150 * 150_000 * 4 * 2  # + fp32 logits of the answer and their grads
    fit = math.floor((budget - weights - state) / sample)
    assert fit == 65
    assert (p.dtype, p.quantization, p.batch_size, p.grad_accum, p.max_seq_len) == ("bfloat16", "none", 16, 1, 600)
    assert p.gradient_checkpointing
    assert p.weights_gb == round(weights / GiB, 3) and p.per_sample_gb == round(sample / GiB, 4)
    assert p.total_gb == round((weights + state + 16 * sample) / GiB, 3)


def test_batch_is_a_power_of_two_and_accumulation_fills_the_target():
    p = plan_memory(SHAPE_2B, 6.5 * GiB, device="cuda", training=True, needed_seq_len=600, answer_tokens=150,
                    target_batch=16)
    # room (6.5*0.9-0.5-3.91-0.09 GiB = 1.35 GiB) holds 5 samples of 0.26 GiB -> batch 4, accumulate 4
    assert (p.batch_size, p.grad_accum) == (4, 4)
    no_ckpt = plan_memory(SHAPE_2B, 6.5 * GiB, device="cuda", training=True, needed_seq_len=600, answer_tokens=150,
                          gradient_checkpointing=False, target_batch=16)
    assert no_ckpt.batch_size < p.batch_size  # 34*h*layers per token without checkpointing


def test_auto_quantisation_steps_down_until_it_fits():
    fits_bf16 = plan_memory(SHAPE_8B, 40 * GiB, device="cuda", training=False, needed_seq_len=600, answer_tokens=150)
    assert fits_bf16.quantization == "none" and fits_bf16.dtype == "bfloat16"
    # 10 GiB: bf16 weights (15.6 GiB) and 8-bit (8.37 GiB + a sample > 8.5 GiB usable) do not fit; 4-bit does.
    p = plan_memory(SHAPE_8B, 10 * GiB, device="cuda", training=False, needed_seq_len=600, answer_tokens=150)
    assert p.quantization == "4bit" and p.weights_gb == round(8e9 * 0.56 * 1.05 / GiB, 3)
    old_gpu = plan_memory(SHAPE_2B, 24 * GiB, device="cuda", training=False, needed_seq_len=600, answer_tokens=150,
                          bf16_supported=False)
    assert old_gpu.dtype == "float16"
    cpu = plan_memory(SHAPE_2B, 24 * GiB, device="cpu", training=False, needed_seq_len=600, answer_tokens=150)
    assert (cpu.dtype, cpu.quantization) == ("float32", "none")


def test_refuses_clearly_when_nothing_fits():
    with pytest.raises(MemoryPlanError) as e:
        plan_memory(SHAPE_8B, 4 * GiB, device="cuda", training=True, needed_seq_len=600, answer_tokens=150)
    msg = str(e.value)
    assert "does not fit" in msg and "8.00B parameters" in msg and "4.00 GiB free cuda" in msg and "smaller" in msg
    with pytest.raises(MemoryPlanError, match="bitsandbytes on a CUDA GPU"):
        plan_memory(SHAPE_2B, 64 * GiB, device="cpu", training=True, needed_seq_len=600, answer_tokens=150, qlora=True)
    with pytest.raises(MemoryPlanError, match="shorter than one chart"):
        plan_memory(SHAPE_2B, 64 * GiB, device="cuda", training=True, needed_seq_len=600, answer_tokens=150,
                    max_seq_len=512)
    with pytest.raises(MemoryPlanError, match="smaller model.train.batch_size"):
        plan_memory(SHAPE_2B, 6.5 * GiB, device="cuda", training=True, needed_seq_len=600, answer_tokens=150,
                    quantization="none", batch_size=64)
