"""The learning-rate schedule of both training loops: linear warmup, then cosine decay to a floor.

One formula for the fine-tuning loop (:func:`infuse.tuning.trainer.lr_at`, warmup given as a
share of the run) and the lab's pretraining loop (:func:`infuse.lab.train.lr_at`, warmup given in
steps). The arithmetic is written exactly once because the lab's cached models and published
numbers depend on every bit of it: ``tests/test_schedule.py`` pins it against the two formulas it
replaced.

>>> warmup_cosine(0, peak=1e-3, total=100, warmup=10, min_ratio=0.1)
0.0001
>>> warmup_cosine(100, peak=1e-3, total=100, warmup=10, min_ratio=0.1)
0.0001
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, peak: float, total: int, warmup: int, min_ratio: float) -> float:
    """The learning rate of 0-based `step` of `total`: ``peak * (step + 1) / warmup`` for the first
    `warmup` steps, then cosine decay from `peak` to ``peak * min_ratio`` at step `total` (and
    flat after it)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = peak * min_ratio
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_steps(total: int, ratio: float) -> int:
    """Warmup steps for a share `ratio` of `total` steps: at least 1 when `ratio` > 0, else none."""
    return max(1, round(total * ratio)) if ratio > 0 else 0


__all__ = ["warmup_cosine", "warmup_steps"]
