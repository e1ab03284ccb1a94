"""Deciding: the criteria and a compare run's measurements in, a :class:`Decision` out.

Pure functions over typed inputs (:class:`Criteria`, :class:`~infuse.evaluation.runs.CompareSummary`):
no prose and no I/O. Each reason is data, a :class:`ReasonCode` and the numbers or variants it
quotes, so a web page, a test or another language can present it; :mod:`infuse.advice.explain`
turns it into today's English sentences. The rules are in the package docstring
(:mod:`infuse.advice`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from infuse.evaluation.runs import CompareSummary, DatasetInfo, Freshness, FreshnessRow, Variant, VariantSummary

__all__ = [
    "Approach",
    "UpdateFrequency",
    "Criteria",
    "Candidate",
    "ReasonCode",
    "RuledOut",
    "Reason",
    "Decision",
    "decide",
    "paraphrase_trend",
    "FEW_EXAMPLES",
    "SMALL_RUN",
    "ABSOLUTE_FLOOR",
    "CHANCE_MARGIN",
    "STYLE_FLOOR",
]

FEW_EXAMPLES = 100
SMALL_RUN = 50
# A variant "answers" only when it clears both floors: its accuracy is at least chance plus
# CHANCE_MARGIN and at least ABSOLUTE_FLOOR, and its 95% interval lies above chance. Chance is the
# run's expected accuracy of guessing (1/options for multiple choice, 0 for open questions), so
# for open questions the absolute floor is what a variant must reach.
CHANCE_MARGIN = 0.05
ABSOLUTE_FLOOR = 0.10
# With a required style (criteria.needs_style) and style adherence measured, a variant whose
# answers follow the house style less often than this is set aside like one over a budget.
STYLE_FLOOR = 0.8
_DEFAULT_OPTIONS = 4  # runs written before the chance was recorded: infuse's own mc sets have 4
_CLOSE = 0.02  # accuracies this close count as overlapping when a variant has no interval
_LEVELS = ["low", "medium", "high"]


class Approach(StrEnum):
    RAG = "rag"
    FINE_TUNE = "fine-tune"
    HYBRID = "hybrid (fine-tune + RAG)"
    BASE = "base model"
    NONE = "none of these"  # no measured variant clears chance and the floor


class UpdateFrequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    RARELY = "rarely"


_SIMPLICITY = [Approach.BASE, Approach.RAG, Approach.FINE_TUNE, Approach.HYBRID]
_FAMILY = {
    Variant.BASE: Approach.BASE,
    Variant.RAG: Approach.RAG,
    Variant.FT: Approach.FINE_TUNE,
    Variant.FT_RAG: Approach.HYBRID,
}
_TRAINED = (Approach.FINE_TUNE, Approach.HYBRID)


@dataclass(frozen=True)
class Criteria:
    """What the team knows about its situation; every field is optional."""

    updates: UpdateFrequency | None = None  # how often the knowledge changes
    latency_ms: float | None = None  # budget per answer (compared with the median)
    needs_style: bool = False  # a strict style or output format is required
    training_budget_usd: float | None = None  # what one training run may cost
    training_examples: int | None = None  # labelled examples available
    privacy_local_only: bool = False  # nothing may leave the machine
    restricted_documents: bool = False  # some documents may be read only by some users

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["updates"] = None if self.updates is None else str(self.updates)
        return data

    @property
    def frequent_updates(self) -> bool:
        return self.updates in (UpdateFrequency.DAILY, UpdateFrequency.WEEKLY)

    @property
    def no_training(self) -> bool:
        return self.training_budget_usd is not None and self.training_budget_usd <= 0

    @property
    def style_fine_tune(self) -> bool:
        """A style is needed and training is possible."""
        return self.needs_style and not self.no_training

    @property
    def few_examples(self) -> bool:
        return self.training_examples is not None and self.training_examples < FEW_EXAMPLES


@dataclass
class Candidate:
    """A measured variant as the advisor weighs it, with the constraints it misses."""

    approach: Approach
    label: str
    accuracy: float
    ci: tuple[float, float] | None
    n: int | None
    k: int | None
    adapter: str | None
    latency_ms: float | None  # median (or mean) per answer
    p90_ms: float | None
    cost_per_1k: float | None
    training_cost: float | None
    training_seconds: float | None
    recall: float | None
    dataset: DatasetInfo | None
    style: float | None = None  # share of generated answers in the run's house style
    style_ci: tuple[float, float] | None = None
    leak_rate: float | None = None  # share of questions about unreadable documents answered above chance
    leak_ci: tuple[float, float] | None = None
    leak_user: str | None = None
    misses_latency: bool = False
    over_budget: bool = False
    misses_style: bool = False  # a style is required and its measured adherence is below STYLE_FLOOR
    leaks_restricted: bool = False  # documents are restricted and it measurably leaks them

    @property
    def leaks(self) -> bool:
        """Its leak rate's interval lies above zero: it tells a user what they may not read."""
        return self.leak_ci is not None and self.leak_ci[0] > 0

    @property
    def feasible(self) -> bool:
        return not (self.misses_latency or self.over_budget or self.misses_style or self.leaks_restricted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "approach": str(self.approach),
            "label": self.label,
            "accuracy": self.accuracy,
            "ci": list(self.ci) if self.ci else None,
            "n": self.n,
            "k": self.k,
            "adapter": self.adapter,
            "latency_ms_median": self.latency_ms,
            "latency_ms_p90": self.p90_ms,
            "cost_per_1k_usd": self.cost_per_1k,
            "training_cost_usd": self.training_cost,
            "training_seconds": self.training_seconds,
            "recall_at_k": self.recall,
            "misses_latency_budget": self.misses_latency,
            "over_training_budget": self.over_budget,
            "style_adherence": self.style,
            "leak_rate": self.leak_rate,
            "misses_style": self.misses_style,
            "leaks_restricted_documents": self.leaks_restricted,
        }


class ReasonCode(StrEnum):
    # from the criteria
    FREQUENT_UPDATES = "frequent_updates"  # updates
    RARE_UPDATES = "rare_updates"
    STYLE_WITHOUT_TRAINING = "style_without_training"
    STYLE_NEEDS_FINE_TUNE = "style_needs_fine_tune"
    FEW_EXAMPLES = "few_examples"  # examples
    ENOUGH_EXAMPLES = "enough_examples"  # examples
    NO_TRAINING_BUDGET = "no_training_budget"
    LOCAL_ONLY = "local_only"
    RESTRICTED_DOCUMENTS = "restricted_documents"
    NO_MEASURED_VARIANT = "no_measured_variant"
    STYLE_AND_FRESH = "style_and_fresh"
    NOTHING_DECISIVE = "nothing_decisive"
    CHECK_RAG_LATENCY = "check_rag_latency"  # budget_ms
    # from a run
    BEST_MEASURED = "best_measured"  # variant, count, questions
    APPROACH_NOT_MEASURED = "approach_not_measured"  # approaches
    WITHIN_INTERVAL = "within_interval"  # variant, reference, approach
    CLEARLY_AHEAD = "clearly_ahead"  # variant, other
    BASE_WITHIN_INTERVAL = "base_within_interval"  # variant
    BASE_SCORE = "base_score"  # variant
    RULED_OUT = "ruled_out"  # variant, better (bool), because (RuledOut), updates
    RAG_OVER_LATENCY_FT_WITHIN = "rag_over_latency_ft_within"  # rag, ft, budget_ms
    WITHIN_LATENCY = "within_latency"  # variant, budget_ms
    ACCURATE_BUT_SLOW = "accurate_but_slow"  # variant, instead, budget_ms
    OVER_LATENCY = "over_latency"  # variant, budget_ms
    NONE_WITHIN_LATENCY = "none_within_latency"  # variant, budget_ms
    NO_LATENCY = "no_latency"
    TRAINING_COST = "training_cost"  # variant, budget_usd (or None), over (bool)
    OVER_TRAINING_BUDGET = "over_training_budget"  # variant, budget_usd
    SERVING_COST = "serving_cost"  # variant
    STALE_AFTER_UPDATE = "stale_after_update"  # changed, stale (rows), fresh (rows)
    UPDATE_TIMES = "update_times"  # reindex_seconds, label, retrain_seconds
    PARAPHRASES_HELPED = "paraphrases_helped"  # low, high
    SMALL_RUN = "small_run"  # n
    NOT_MEASURED_AS_SUCH = "not_measured_as_such"  # approach
    NOTHING_WORKS = "nothing_works"  # variant (the best), chance, floor
    BELOW_FLOOR = "below_floor"  # variants, chance, floor
    STYLE_NOT_MEASURED = "style_not_measured"
    BARELY_ANSWERS = "barely_answers"  # variant, floor
    TIMINGS_NOISY = "timings_noisy"  # caveat (the run's sentence), latency_matters (bool)
    STYLE_GAIN = "style_gain"  # styled, unstyled (candidates), required (bool)
    MISSES_STYLE = "misses_style"  # variants, floor
    LEAKS = "leaks"  # variant (leaking), safe (candidate or None), user, restricted (bool)
    LEAK_NOT_MEASURED = "leak_not_measured"
    MULTI_PASSAGE_WEAK = "multi_passage_weak"  # one, more (rag candidates)
    RAFT_GAIN = "raft_gain"  # raft (hybrid candidate), plain (rag candidate at the same k)


class RuledOut(StrEnum):
    """Why the criteria set an approach aside."""

    NO_TRAINING_BUDGET = "no_training_budget"
    STALE = "stale"  # frequent updates; it learns a change only by retraining
    NO_STYLE = "no_style"  # cannot guarantee a style without fine-tuning
    CRITERIA = "criteria"


@dataclass(frozen=True)
class Reason:
    """One reason: what kind (``code``) and the facts it quotes (numbers, labels, candidates)."""

    code: ReasonCode
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: candidates and freshness rows as their dicts, enums as their values."""
        return {"code": str(self.code), **{key: _plain(value) for key, value in self.facts.items()}}


def _plain(value: Any) -> Any:
    if isinstance(value, Candidate):
        return value.to_dict()
    if isinstance(value, FreshnessRow):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, StrEnum) else value


@dataclass
class Decision:
    """The advisor's verdict as data; :func:`infuse.advice.explain.explain` words it."""

    approach: Approach
    confidence: str  # "high" | "medium" | "low"
    reasons: list[Reason]
    criteria: Criteria
    candidates: list[Candidate] = field(default_factory=list)  # every measured variant
    chosen: Candidate | None = None  # the variant that represents the approach
    questions: str | None = None  # the run's question set
    trend: tuple[Candidate, Candidate] | None = None  # (fewest, most) paraphrases, when more helped
    evidence: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Candidates from a run


def _candidate(variant: VariantSummary, criteria: Criteria) -> Candidate | None:
    approach = _FAMILY.get(variant.kind) if variant.kind else None
    if approach is None or variant.accuracy is None:
        return None
    latency = variant.latency_ms.typical if variant.latency_ms else None
    training = variant.training
    cand = Candidate(
        approach=approach,
        label=variant.label,
        accuracy=variant.accuracy,
        ci=variant.ci,
        n=variant.n,
        k=variant.k,
        adapter=variant.adapter,
        latency_ms=latency,
        p90_ms=variant.latency_ms.p90 if variant.latency_ms else None,
        cost_per_1k=variant.cost_per_1k_usd,
        training_cost=training.cost_usd if training else None,
        training_seconds=training.wall_seconds if training else None,
        recall=variant.retrieval.recall_at_k if variant.retrieval else None,
        dataset=training.dataset if training else None,
        style=variant.style.adherence if variant.style else None,
        style_ci=variant.style.ci if variant.style else None,
        leak_rate=variant.leak.leak_rate if variant.leak else None,
        leak_ci=variant.leak.ci if variant.leak else None,
        leak_user=variant.leak.user if variant.leak else None,
    )
    if criteria.needs_style and cand.style is not None:
        cand.misses_style = cand.style < STYLE_FLOOR
    if criteria.restricted_documents:
        cand.leaks_restricted = cand.leaks
    if criteria.latency_ms is not None and latency is not None:
        cand.misses_latency = latency > criteria.latency_ms
    if approach in _TRAINED:
        if criteria.no_training:
            cand.over_budget = True
        elif criteria.training_budget_usd is not None and cand.training_cost is not None:
            cand.over_budget = cand.training_cost > criteria.training_budget_usd
    return cand


def _overlaps(a: Candidate, b: Candidate) -> bool:
    if a.ci is not None and b.ci is not None:
        return a.ci[0] <= b.ci[1] and b.ci[0] <= a.ci[1]
    return abs(a.accuracy - b.accuracy) <= _CLOSE


def _best(cands: list[Candidate]) -> Candidate:
    # most accurate; ties go to the simpler approach, then the cheaper (smaller k)
    return max(cands, key=lambda c: (c.accuracy, -_SIMPLICITY.index(c.approach), -(c.k or 0)))


def _allowed(criteria: Criteria) -> list[Approach]:
    allowed = list(_SIMPLICITY)
    if criteria.style_fine_tune:
        allowed = [Approach.FINE_TUNE, Approach.HYBRID]
    if criteria.frequent_updates:
        allowed = [a for a in allowed if a not in (Approach.BASE, Approach.FINE_TUNE)]
    if criteria.no_training:
        allowed = [a for a in allowed if a in (Approach.BASE, Approach.RAG)]
    return allowed


def paraphrase_trend(cands: list[Candidate]) -> tuple[Candidate, Candidate] | None:
    """(fewest, most) paraphrases among the fine-tuned-only variants, when more paraphrases helped."""
    points = [
        (c.dataset.paraphrase_count, c)
        for c in cands
        if c.approach == Approach.FINE_TUNE and c.dataset is not None and c.dataset.paraphrase_count is not None
    ]
    if len({x for x, _ in points}) < 2:
        return None
    low = min(points, key=lambda p: (p[0], -p[1].accuracy))
    high = max(points, key=lambda p: (p[0], p[1].accuracy))
    return (low[1], high[1]) if high[1].accuracy > low[1].accuracy else None


def _ruled_out_because(approach: Approach, criteria: Criteria) -> RuledOut:
    if criteria.no_training and approach in _TRAINED:
        return RuledOut.NO_TRAINING_BUDGET
    if criteria.frequent_updates and approach in (Approach.FINE_TUNE, Approach.BASE):
        return RuledOut.STALE
    if criteria.needs_style and approach in (Approach.BASE, Approach.RAG):
        return RuledOut.NO_STYLE
    return RuledOut.CRITERIA


# --------------------------------------------------------------------------------------------
# From the criteria alone


def _criteria_reasons(criteria: Criteria) -> list[Reason]:
    reasons = []
    if criteria.frequent_updates:
        reasons.append(Reason(ReasonCode.FREQUENT_UPDATES, {"updates": criteria.updates}))
    elif criteria.updates == UpdateFrequency.RARELY:
        reasons.append(Reason(ReasonCode.RARE_UPDATES))
    if criteria.needs_style:
        reasons.append(
            Reason(ReasonCode.STYLE_WITHOUT_TRAINING if criteria.no_training else ReasonCode.STYLE_NEEDS_FINE_TUNE)
        )
    if criteria.style_fine_tune and criteria.training_examples is not None:
        code = ReasonCode.FEW_EXAMPLES if criteria.few_examples else ReasonCode.ENOUGH_EXAMPLES
        reasons.append(Reason(code, {"examples": criteria.training_examples}))
    if criteria.no_training:
        reasons.append(Reason(ReasonCode.NO_TRAINING_BUDGET))
    if criteria.privacy_local_only:
        reasons.append(Reason(ReasonCode.LOCAL_ONLY))
    if criteria.restricted_documents:
        reasons.append(Reason(ReasonCode.RESTRICTED_DOCUMENTS))
    return reasons


def _criteria_only(criteria: Criteria, no_measurements: bool) -> Decision:
    reasons = [Reason(ReasonCode.NO_MEASURED_VARIANT)] if no_measurements else []
    reasons += _criteria_reasons(criteria)
    fresh, style = criteria.frequent_updates, criteria.style_fine_tune
    if style and fresh:
        approach = Approach.HYBRID
        reasons.append(Reason(ReasonCode.STYLE_AND_FRESH))
    elif style:
        approach = Approach.FINE_TUNE
    else:
        approach = Approach.RAG
        if not fresh:
            reasons.append(Reason(ReasonCode.NOTHING_DECISIVE))
    if criteria.latency_ms is not None and approach in (Approach.RAG, Approach.HYBRID):
        reasons.append(Reason(ReasonCode.CHECK_RAG_LATENCY, {"budget_ms": criteria.latency_ms}))
    level = 1 if (fresh or style) else 0
    if style and criteria.few_examples:
        level -= 1
    return Decision(
        approach=approach,
        confidence=_LEVELS[max(0, level)],
        reasons=reasons,
        criteria=criteria,
        evidence={"criteria": criteria.to_dict(), "measured": False},
    )


# --------------------------------------------------------------------------------------------
# With a run's measurements


def _freshness_reasons(fresh: Freshness | None, evidence: dict[str, Any]) -> list[Reason]:
    if fresh is None:
        return []
    rows = list(fresh.variants)
    evidence["freshness"] = {
        "stale_share": {v.label: v.stale_share for v in rows if v.stale_share is not None},
        "changed_facts": fresh.changed_facts,
        "reindex_seconds": fresh.reindex_seconds,
        "retrain_seconds": {v.label: v.retrain_seconds for v in rows if v.retrain_seconds is not None},
    }
    reasons = []
    measured: list[FreshnessRow] = [v for v in rows if v.stale_share is not None]
    stale = [v for v in measured if v.variant == Variant.FT]
    current = [v for v in measured if v.variant != Variant.FT]
    if measured:
        reasons.append(
            Reason(ReasonCode.STALE_AFTER_UPDATE, {"changed": fresh.changed_facts, "stale": stale, "fresh": current})
        )
    retrains = [v for v in rows if v.retrain_seconds is not None]
    if fresh.reindex_seconds is not None and retrains:
        reasons.append(
            Reason(
                ReasonCode.UPDATE_TIMES,
                {
                    "reindex_seconds": fresh.reindex_seconds,
                    "label": retrains[0].label,
                    "retrain_seconds": retrains[0].retrain_seconds,
                },
            )
        )
    return reasons


def _latency_reasons(
    criteria: Criteria,
    cands: list[Candidate],
    reps: dict[Approach, Candidate],
    allowed: list[Approach],
    chosen: Candidate,
) -> tuple[list[Reason], int]:
    if criteria.latency_ms is None:
        return [], 0
    budget = criteria.latency_ms
    reasons, penalties = [], 0
    rag, ft = reps.get(Approach.RAG), reps.get(Approach.FINE_TUNE)
    ft_meets = ft is not None and not ft.misses_latency
    if rag is not None and rag.misses_latency and ft_meets:
        reasons.append(Reason(ReasonCode.RAG_OVER_LATENCY_FT_WITHIN, {"rag": rag, "ft": ft, "budget_ms": budget}))
    elif chosen.latency_ms is not None and not chosen.misses_latency:
        reasons.append(Reason(ReasonCode.WITHIN_LATENCY, {"variant": chosen, "budget_ms": budget}))
    for a in allowed:
        family = [c for c in cands if c.approach == a]
        if a in reps and family and _best(family) is not reps[a] and _best(family).misses_latency:
            reasons.append(
                Reason(
                    ReasonCode.ACCURATE_BUT_SLOW, {"variant": _best(family), "instead": reps[a], "budget_ms": budget}
                )
            )
    for a, c in reps.items():
        if a in allowed and c.misses_latency and c is not chosen and not (a == Approach.RAG and ft_meets):
            reasons.append(Reason(ReasonCode.OVER_LATENCY, {"variant": c, "budget_ms": budget}))
    if chosen.misses_latency:
        penalties += 1
        reasons.append(Reason(ReasonCode.NONE_WITHIN_LATENCY, {"variant": chosen, "budget_ms": budget}))
    if chosen.latency_ms is None:
        reasons.append(Reason(ReasonCode.NO_LATENCY))
    return reasons, penalties


def _training_reasons(
    criteria: Criteria, reps: dict[Approach, Candidate], chosen: Candidate
) -> tuple[list[Reason], int]:
    reasons, penalties = [], 0
    if chosen.approach in _TRAINED and chosen.training_cost is not None:
        reasons.append(
            Reason(
                ReasonCode.TRAINING_COST,
                {"variant": chosen, "budget_usd": criteria.training_budget_usd, "over": chosen.over_budget},
            )
        )
        if criteria.training_budget_usd is not None and chosen.over_budget:
            penalties += 1
    if not criteria.no_training:
        name = chosen.adapter or chosen.label
        over = {
            c.adapter or c.label: c
            for c in reps.values()
            if c.over_budget and c.training_cost is not None and (c.adapter or c.label) != name
        }
        reasons += [
            Reason(ReasonCode.OVER_TRAINING_BUDGET, {"variant": c, "budget_usd": criteria.training_budget_usd})
            for c in over.values()
        ]
    return reasons, penalties


def _comparison_reasons(
    reasons: list[Reason],
    reps: dict[Approach, Candidate],
    allowed: list[Approach],
    chosen: Candidate,
    top: Candidate,
    criteria: Criteria,
) -> int:
    """Why `chosen` over the others (appended to `reasons`); returns the confidence penalties."""
    approach = chosen.approach
    if chosen is not top:
        reasons.append(Reason(ReasonCode.WITHIN_INTERVAL, {"variant": chosen, "reference": top, "approach": approach}))
    else:
        for other in (reps[a] for a in _SIMPLICITY[: _SIMPLICITY.index(approach)] if a in reps and a in allowed):
            if other.accuracy >= chosen.accuracy or _overlaps(other, chosen):
                continue  # set aside for a constraint (latency, training budget), said below
            reasons.append(Reason(ReasonCode.CLEARLY_AHEAD, {"variant": chosen, "other": other}))
    base = reps.get(Approach.BASE)
    if approach != Approach.BASE and base is not None and base is not chosen:
        quoted = any(r.facts.get("other") is base for r in reasons if r.code == ReasonCode.CLEARLY_AHEAD) or any(
            r.facts["variant"].label == base.label for r in reasons if r.code == ReasonCode.BEST_MEASURED
        )
        if _overlaps(base, top):
            reasons.append(Reason(ReasonCode.BASE_WITHIN_INTERVAL, {"variant": base}))
        elif not quoted:
            reasons.append(Reason(ReasonCode.BASE_SCORE, {"variant": base}))
    # the best variant the criteria ruled out: clearly better (a conflict) or as good (worth saying)
    excluded = [c for a, c in reps.items() if a not in allowed]
    if not excluded:
        return 0
    other = _best(excluded)
    if not (other.accuracy > chosen.accuracy or _overlaps(other, chosen)):
        return 0
    better = not _overlaps(other, chosen)
    reasons.append(
        Reason(
            ReasonCode.RULED_OUT,
            {
                "variant": other,
                "better": better,
                "updates": criteria.updates,
                "because": _ruled_out_because(other.approach, criteria),
            },
        )
    )
    return 1 if better else 0


def _behaviour_reasons(criteria: Criteria, cands: list[Candidate]) -> list[Reason]:
    """Style, leakage and multi-passage reading, each quoting the run's numbers (when measured)."""
    reasons = []
    styled = [c for c in cands if c.style is not None]
    if styled:
        trained = [c for c in styled if c.approach in _TRAINED]
        untrained = [c for c in styled if c.approach not in _TRAINED]
        if trained and untrained:
            best = max(trained, key=lambda c: (c.style or 0.0, c.accuracy))
            other = max(untrained, key=lambda c: (c.style or 0.0, c.accuracy))
            if (best.style or 0.0) > (other.style or 0.0):
                reasons.append(
                    Reason(ReasonCode.STYLE_GAIN, {"styled": best, "unstyled": other, "required": criteria.needs_style})
                )
        missing = [c for c in styled if c.misses_style]
        if missing:
            reasons.append(Reason(ReasonCode.MISSES_STYLE, {"variants": missing, "floor": STYLE_FLOOR}))
    measured = [c for c in cands if c.leak_rate is not None]
    leaking = [c for c in measured if c.leaks]
    if leaking:
        worst = max(leaking, key=lambda c: c.leak_rate or 0.0)
        safe = [c for c in measured if not c.leaks and c.approach in (Approach.RAG, Approach.HYBRID)]
        reasons.append(
            Reason(
                ReasonCode.LEAKS,
                {
                    "variant": worst,
                    "safe": max(safe, key=lambda c: c.accuracy) if safe else None,
                    "user": worst.leak_user,
                    "restricted": criteria.restricted_documents,
                },
            )
        )
    elif criteria.restricted_documents and not measured:
        reasons.append(Reason(ReasonCode.LEAK_NOT_MEASURED))
    rag = {c.k: c for c in cands if c.approach == Approach.RAG and c.k is not None}
    one = rag.get(1)
    weaker = [c for k, c in sorted(rag.items()) if k > 1 and one is not None and c.accuracy < one.accuracy]
    if one is not None and weaker and not _overlaps(one, weaker[-1]):
        reasons.append(Reason(ReasonCode.MULTI_PASSAGE_WEAK, {"one": one, "more": weaker[-1]}))
    for c in cands:
        if c.approach == Approach.HYBRID and c.dataset is not None and c.dataset.kind == "raft" and c.k in rag:
            reasons.append(Reason(ReasonCode.RAFT_GAIN, {"raft": c, "plain": rag[c.k]}))
    return reasons


def chance_of(summary: CompareSummary) -> float:
    """The accuracy of guessing on the run's questions: recorded by compare (the mean of
    1/options over multiple-choice questions, 0 for open ones); for older runs, 1/4 for the
    multiple-choice share of the questions (infuse's own sets have four options)."""
    info = summary.questions
    if info is not None and info.chance is not None:
        return info.chance
    if info is None or not info.kinds:
        return 0.0
    total = sum(info.kinds.values())
    return info.kinds.get("mc", 0) / total / _DEFAULT_OPTIONS if total else 0.0


def floor_for(chance: float) -> float:
    """The accuracy a variant must reach to count as answering (see :data:`ABSOLUTE_FLOOR`)."""
    return round(max(ABSOLUTE_FLOOR, chance + CHANCE_MARGIN), 4)


def answers(c: Candidate, chance: float) -> bool:
    """Whether `c` clears the floor and its interval lies above chance."""
    return c.accuracy >= floor_for(chance) and (c.ci is None or c.ci[0] > chance)


def _nothing_works(
    criteria: Criteria, cands: list[Candidate], reasons: list[Reason], chance: float, evidence: dict[str, Any]
) -> Decision:
    """No variant answers: say so (never "the base model is good enough"), with what to check."""
    best = _best(cands)
    reasons = reasons + [
        Reason(ReasonCode.NOTHING_WORKS, {"variant": best, "chance": chance, "floor": floor_for(chance)})
    ]
    reasons += _criteria_reasons(criteria)
    n = best.n
    small = n is not None and n < SMALL_RUN
    if small:
        reasons.append(Reason(ReasonCode.SMALL_RUN, {"n": n}))
    evidence["answering"] = []
    return Decision(
        approach=Approach.NONE,
        confidence="medium" if small else "high",
        reasons=reasons,
        criteria=criteria,
        candidates=cands,
        chosen=None,
        evidence=evidence,
    )


def _measured(criteria: Criteria, summary: CompareSummary, cands: list[Candidate]) -> Decision:
    qname = summary.questions.name if summary.questions else None
    qcount = summary.questions.count if summary.questions else None
    chance = chance_of(summary)
    evidence: dict[str, Any] = {
        "criteria": criteria.to_dict(),
        "measured": True,
        "run": summary.run,
        "questions": qname,
        "chance": round(chance, 4),
        "floor": floor_for(chance),
    }
    best_any = _best(cands)
    reasons = [Reason(ReasonCode.BEST_MEASURED, {"variant": best_any, "count": qcount, "questions": qname})]
    working = [c for c in cands if answers(c, chance)]
    if not working:
        decision = _nothing_works(criteria, cands, reasons, chance, evidence)
        decision.questions = qname
        return decision
    below = [c for c in cands if not answers(c, chance)]
    if below:
        reasons.append(
            Reason(ReasonCode.BELOW_FLOOR, {"variants": below, "chance": chance, "floor": floor_for(chance)})
        )
    evidence["answering"] = [c.label for c in working]
    penalties = 0
    trend = paraphrase_trend(working)

    # one representative per approach: the most accurate that answers and meets the constraints
    reps: dict[Approach, Candidate] = {}
    for approach in _SIMPLICITY:
        family = [c for c in working if c.approach == approach]
        if family:
            ok = [c for c in family if c.feasible]
            reps[approach] = _best(ok) if ok else _best(family)
    evidence["candidates"] = {str(a): c.to_dict() for a, c in reps.items()}
    evidence["best"] = best_any.to_dict()

    allowed = _allowed(criteria)
    pool = [reps[a] for a in allowed if a in reps]
    if not pool:
        # the approach the criteria call for was not measured: recommend it, quote what was measured
        decision = _criteria_only(criteria, False)
        decision.reasons = (
            reasons + [Reason(ReasonCode.APPROACH_NOT_MEASURED, {"approaches": allowed})] + decision.reasons
        )
        decision.evidence.update(evidence)
        decision.confidence = "medium" if decision.confidence == "high" else decision.confidence
        decision.candidates, decision.questions, decision.trend = cands, qname, trend
        return decision

    feasible = [c for c in pool if c.feasible]
    top = _best(feasible or pool)
    chosen = next(c for a in _SIMPLICITY for c in (feasible or pool) if c.approach == a and _overlaps(c, top))
    approach = chosen.approach
    penalties += _comparison_reasons(reasons, reps, allowed, chosen, top, criteria)
    if chosen.ci is not None and chosen.ci[0] < floor_for(chance):  # it may well be at the floor
        penalties += 1
        reasons.append(Reason(ReasonCode.BARELY_ANSWERS, {"variant": chosen, "floor": floor_for(chance)}))
    more, extra = _latency_reasons(criteria, working, reps, allowed, chosen)
    reasons += more
    penalties += extra
    more, extra = _training_reasons(criteria, reps, chosen)
    reasons += more
    penalties += extra
    if chosen.cost_per_1k is not None:
        reasons.append(Reason(ReasonCode.SERVING_COST, {"variant": chosen}))
    reasons += _freshness_reasons(summary.freshness, evidence)
    reasons += _criteria_reasons(criteria)

    # style + frequent updates: hybrid is the answer even if only rag was measured
    if criteria.style_fine_tune and criteria.frequent_updates and approach == Approach.RAG:
        approach = Approach.HYBRID
        penalties += 1
    if trend is not None and approach in _TRAINED:
        reasons.append(Reason(ReasonCode.PARAPHRASES_HELPED, {"low": trend[0], "high": trend[1]}))
    n = chosen.n if chosen.n is not None else (qcount or None)
    if n is not None and n < SMALL_RUN:
        penalties += 1
        reasons.append(Reason(ReasonCode.SMALL_RUN, {"n": n}))
    if chosen.ci is None or top.ci is None:
        penalties += 1
    if approach != chosen.approach:
        reasons.append(Reason(ReasonCode.NOT_MEASURED_AS_SUCH, {"approach": approach}))
    if summary.timing is not None and summary.timing.noisy:
        matters = criteria.latency_ms is not None
        reasons.append(
            Reason(ReasonCode.TIMINGS_NOISY, {"caveat": summary.timing.caveat(), "latency_matters": matters})
        )
        evidence["timings_noisy"] = True
        penalties += 1 if matters else 0  # a latency budget was weighed on noisy numbers
    reasons += _behaviour_reasons(criteria, cands)
    if criteria.needs_style and chosen.style is None:  # accuracy says nothing about the style: at most medium
        reasons.append(Reason(ReasonCode.STYLE_NOT_MEASURED))
        penalties = max(penalties, 1)
    if criteria.restricted_documents and chosen.leaks:  # every variant leaks: say so, lower the confidence
        penalties += 1
    evidence["chosen"] = chosen.to_dict()
    evidence["reference"] = top.label
    evidence["allowed"] = [str(a) for a in allowed]
    return Decision(
        approach=approach,
        confidence=_LEVELS[max(0, 2 - penalties)],
        reasons=reasons,
        criteria=criteria,
        candidates=cands,
        chosen=chosen,
        questions=qname,
        trend=trend,
        evidence=evidence,
    )


def decide(criteria: Criteria, summary: CompareSummary | None = None) -> Decision:
    """The approach, its confidence and the reasons (as data) from the criteria and, when given,
    a compare run's summary."""
    if summary is None:
        return _criteria_only(criteria, False)
    cands = [c for v in summary.variants if (c := _candidate(v, criteria))]
    if not cands:
        return _criteria_only(criteria, True)
    return _measured(criteria, summary, cands)
