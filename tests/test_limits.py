"""benchmarks/limits.py: the arithmetic limit's parts add up to it, and the breakdown puts
each op's time in the class the limit counts its work in."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import limits  # noqa: E402


def test_the_limit_is_the_sum_of_its_parts():
    rates = limits.Rates(flops=2e10, exps=5e8, bytes=1e10)
    work = limits.Work(flops=4e10, exps=1e9, bytes=3e10)
    parts = work.parts(rates)
    assert parts == {"matmul": 2.0, "exp": 2.0, "passes": 3.0, "small": 0.0, "python": 0.0}
    assert work.seconds(rates) == 7.0
    assert set(parts) == set(limits.CLASSES)


def test_ops_are_classed_by_kernel_and_by_their_time_a_call():
    assert limits.classify("aten::addmm", 1, 1e-6) == "matmul"
    assert limits.classify("aten::mkldnn_rnn_layer_backward", 10, 1.0) == "matmul"
    assert limits.classify("aten::_log_softmax", 1, 1e-6) == "exp"
    assert limits.classify("aten::amax", 10, 10 * limits.SMALL_CALL) == "passes"
    assert limits.classify("aten::amax", 10, 9 * limits.SMALL_CALL) == "small"
    assert limits.classify("aten::convolution_backward", 1, 1e-6) == "matmul"
    assert limits.classify("Optimizer.step#Adam.step", 1, 1.0) == "python"


def test_a_matmul_and_an_exp_land_in_their_classes():
    a = torch.randn(384, 384)
    x = torch.randn(1 << 20)

    def work():
        for _ in range(4):
            a @ a
        x.exp()

    work()
    wall, seconds = limits.breakdown(work, unprofiled=0.0)
    assert seconds["matmul"] > 0 and seconds["exp"] > 0
    assert seconds["python"] == 0.0  # nothing is left of an unprofiled time of 0
    assert sum(seconds.values()) <= wall
    line = limits.breakdown_line(wall, seconds, limits.Work(flops=1.0).parts(
        limits.Rates(flops=1.0, exps=1.0, bytes=1.0)))
    assert all(name in line for name in limits.CLASSES.values())


def test_the_transformer_steps_count_its_layers_matmuls_and_its_attention():
    from harness.transformer import TransformerGenerator

    layers, d_model, d_ff, context = 2, 8, 12, 5.0
    model = TransformerGenerator(11, 6, 0, layers, 2, d_model, d_ff)
    blocks = [m for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and name != "output"]
    matmuls = sum(2 * m.in_features * m.out_features for m in blocks)  # a token row's
    attention = layers * 4 * context * d_model  # scores and the weighted sum of the values
    work = limits.transformer_steps(3, context, layers, d_model, d_ff)
    assert work.flops == 3 * (matmuls + attention) and work.exps == 3 * layers * context
