"""Holding a user's model during an audit: eval mode, frozen weights, everything restored."""

from __future__ import annotations

import torch
from torch import nn

from worker.model_state import model_as_found


def test_model_as_found_restores_modes_and_requires_grad_per_module() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Linear(2, 2))
    model.train()
    model[1].eval()
    model[2].weight.requires_grad_(False)
    with model_as_found(model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
        model(torch.rand(1, 2, requires_grad=True)).sum().backward()
    assert [m.training for m in model] == [True, False, True]
    assert [p.requires_grad for p in model.parameters()] == [True, True, False, True]
    assert all(p.grad is None for p in model.parameters())
