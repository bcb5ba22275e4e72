"""The student's latency-targeted size rule and its input clamp."""

import torch

from medistill.config import StudentConfig
from medistill.student.model import INPUT_CLIP, StudentMLP, multiply_adds, size_for_latency


def test_multiply_adds_by_hand() -> None:
    assert multiply_adds(20, 2, (32, 16)) == 20 * 32 + 32 * 16 + 16 * 2


def test_size_rule_keeps_every_table_within_the_budget() -> None:
    assert size_for_latency(20, 2) == (32, 16)
    assert size_for_latency(60, 2) == (16, 8)          # wider table, narrower student
    for n_inputs in (5, 20, 60, 150, 250):
        layers = size_for_latency(n_inputs, 2, max_macs=2048)
        assert multiply_adds(n_inputs, 2, layers) <= 2048
        wider = (layers[0] * 2, layers[0])
        assert layers[0] == 64 or multiply_adds(n_inputs, 2, wider) > 2048


def test_config_auto_and_explicit_sizes() -> None:
    assert StudentConfig().resolved_hidden_layers(20, 2) == (32, 16)
    assert StudentConfig(hidden_layers=(7,)).resolved_hidden_layers(20, 2) == (7,)
    assert StudentConfig(max_macs_per_row=100_000).resolved_hidden_layers(20, 2) == (64, 32)


def test_inputs_are_clamped_before_the_first_layer() -> None:
    net = StudentMLP(3, 2, (4,), generator=torch.Generator().manual_seed(0))
    x = torch.tensor([[INPUT_CLIP, 0.0, -INPUT_CLIP]])
    far = torch.tensor([[1e6, 0.0, -1e6]])
    assert torch.equal(net(x), net(far))
