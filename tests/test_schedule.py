"""The one LR schedule (infuse.tuning.schedule) gives bit-identical rates to the two formulas it
replaced: the lab's cached models and published numbers depend on every bit."""

from __future__ import annotations

import math

import pytest

from infuse.lab.train import LabTrainConfig
from infuse.lab.train import lr_at as lab_lr_at
from infuse.tuning.schedule import warmup_cosine, warmup_steps
from infuse.tuning.trainer import TuneConfig, TuneMethod
from infuse.tuning.trainer import lr_at as tune_lr_at


def old_tune_lr_at(step: int, steps: int, config: TuneConfig) -> float:
    """infuse.tuning.trainer.lr_at before issue 11, verbatim."""
    peak = config.learning_rate
    warmup = max(1, round(steps * config.warmup_ratio)) if config.warmup_ratio > 0 else 0
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    floor = peak * config.min_lr_ratio
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def old_lab_lr_at(step: int, config: LabTrainConfig) -> float:
    """infuse.lab.train.lr_at before issue 11, verbatim."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


TUNE_CASES = [  # (config, steps)
    (TuneConfig(), 1),
    (TuneConfig(), 7),
    (TuneConfig(), 100),
    (TuneConfig(method=TuneMethod.FULL), 1234),
    (TuneConfig(lr=1e-2, warmup_ratio=0.0), 60),  # no warmup
    (TuneConfig(lr=3e-4, warmup_ratio=1.0), 20),  # warmup == steps
    (TuneConfig(lr=1e-3, warmup_ratio=0.5, min_lr_ratio=0.0), 9),
    (TuneConfig(lr=2e-4, warmup_ratio=0.001), 50),  # rounds to 0, floored at 1
    (TuneConfig(lr=5e-5, warmup_ratio=0.1, min_lr_ratio=1.0), 33),
]

LAB_CASES = [
    LabTrainConfig.for_lang("en"),
    LabTrainConfig.for_lang("ja"),
    LabTrainConfig(steps=60, lr=3e-3, warmup_steps=5),
    LabTrainConfig(steps=100, warmup_steps=0),  # no warmup
    LabTrainConfig(steps=50, warmup_steps=50),  # warmup == steps
    LabTrainConfig(steps=10, warmup_steps=20),  # warmup longer than the run
    LabTrainConfig(steps=1, warmup_steps=1, min_lr_ratio=0.0),
]


@pytest.mark.parametrize(("config", "steps"), TUNE_CASES)
def test_tuning_schedule_is_bit_identical_to_the_old_formula(config: TuneConfig, steps: int) -> None:
    for step in [*range(steps + 2), steps - 1, steps, steps + 10]:  # every step, the last one, and past the end
        assert tune_lr_at(step, steps, config) == old_tune_lr_at(step, steps, config), (config, steps, step)


@pytest.mark.parametrize("config", LAB_CASES, ids=lambda c: f"{c.lang}-{c.steps}-{c.warmup_steps}")
def test_lab_schedule_is_bit_identical_to_the_old_formula(config: LabTrainConfig) -> None:
    for step in [*range(config.steps + 2), config.steps + 10]:
        assert lab_lr_at(step, config) == old_lab_lr_at(step, config), (config, step)


def test_the_schedule_shape() -> None:
    rates = [warmup_cosine(s, peak=1e-3, total=100, warmup=10, min_ratio=0.1) for s in range(101)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)  # linear warmup to the peak
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))  # then only down
    assert rates[100] == pytest.approx(1e-4)  # to peak * min_ratio
    assert warmup_cosine(500, peak=1e-3, total=100, warmup=10, min_ratio=0.1) == rates[100]  # flat after the end
    assert warmup_steps(100, 0.05) == 5 and warmup_steps(100, 0.0) == 0 and warmup_steps(10, 0.01) == 1
