"""The logit margin of a class over its best rival: what the map engine's margin loss, the scorer's mask
margin and MM-BD's statistic all measure."""

from __future__ import annotations

from torch import Tensor


def class_margins(logits: Tensor, classes: Tensor) -> Tensor:
    """``logit_k - max_{j != k} logit_j`` for each row of ``logits`` (N, K) and its class k in ``classes`` (N,)."""
    own = logits.gather(1, classes[:, None]).squeeze(1)
    rivals = logits.scatter(1, classes[:, None], float("-inf")).amax(dim=1)
    return own - rivals
