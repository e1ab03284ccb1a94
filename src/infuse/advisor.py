"""The advisor: which approach to use (base model, RAG, fine-tuning or both), why, and what to try next.

:func:`advise` combines the decision criteria a team states (:class:`Criteria`) with the
measurements of a compare run (its ``summary.json``, see :mod:`infuse.evaluation.compare`) and
returns a :class:`Recommendation`: the approach, a confidence, the reasons (quoting the run's
numbers) and concrete ``infuse`` commands to run next.

The rules
---------

From the criteria alone (no run, or a run without usable variants):

* **Knowledge changes often** (``updates`` daily or weekly) -> **RAG**. A fine-tuned model keeps
  answering the facts it was trained on until it is retrained; a knowledge base picks up a change
  when the changed document is re-ingested (seconds). Ovadia et al. (2023, "Fine-Tuning or
  Retrieval? Comparing Knowledge Injection in LLMs") found RAG consistently better than
  unsupervised fine-tuning for knowledge the model had not seen, most clearly for new (current
  events) facts.
* **A strict style or output format** (``needs_style``) -> **fine-tune**: formats and tone are
  learned reliably from examples, while prompting alone drifts. With knowledge that also changes
  often -> **hybrid (fine-tune + RAG)**: the adapter for the form, retrieval for the facts. RAFT
  (Zhang et al., 2024, "RAFT: Adapting Language Model to Domain Specific RAG") trains the model on
  questions with retrieved documents, distractors included, so the fine-tuned model uses retrieval
  well; infuse builds such sets with ``dataset build --kind raft``.
* **Nothing decisive, or unsure** -> **start with RAG**, with low confidence: no training, cheap
  to update, the stronger method for new knowledge in the literature; measure before fine-tuning.
* A training budget of 0 rules fine-tuning out; few labelled examples (< 100) for a style
  fine-tune lower the confidence (generate more from the knowledge base).
* ``privacy_local_only`` changes no choice: infuse trains, retrieves and generates on the machine;
  the reasons say so, and warn against hosted APIs for any of it.

With a run's measurements (``summary``):

1. The criteria restrict the approaches: style -> fine-tune or hybrid; frequent updates -> no
   fine-tune-only and no bare base model (neither learns a change without retraining).
2. Each allowed approach is represented by its most accurate variant that meets the latency
   budget (median latency per answer) and, for trained variants, the training budget; when none of
   its variants does, by its most accurate one, flagged.
3. Among the approaches that meet the constraints (all of them when none does), the most accurate
   is the reference; the recommendation is the *simplest* approach (base < RAG < fine-tune <
   hybrid) whose 95% interval overlaps the reference's. So the base model wins when it is already
   within the interval of the best (nothing to inject), and RAG wins over a fine-tuned model within
   its interval (simpler, and fresh after an update); a fine-tuned model wins when it is clearly
   (non-overlapping intervals) better and the knowledge changes rarely. Without intervals, two
   accuracies within 2 points count as overlapping.
4. The reasons quote the numbers: the best variant, the comparison that decided, latency against
   the budget (e.g. RAG missing it while the fine-tuned model meets it), training cost against the
   budget, and the freshness scenario (Ovadia et al.: the fine-tuned model keeps stale facts):
   "after the update, ft:x still answered the old value for 70% of changed facts; rag@3 0%", with
   re-index vs retrain time. When the paraphrase-count curve rises, the next steps suggest more
   paraphrases (Ovadia et al.: repeating facts in paraphrased forms helps fine-tuning learn them).
5. Confidence starts high and drops a level for each of: fewer than 50 questions, missing
   intervals, a constraint the chosen variant misses, an approach recommended without being
   measured, and a clearly better variant the criteria ruled out.

>>> rec = advise(Criteria(updates=UpdateFrequency.DAILY))
>>> rec.approach, rec.confidence
(<Approach.RAG: 'rag'>, 'medium')
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from infuse.evaluation.compare import summary_field

__all__ = ["Approach", "UpdateFrequency", "Criteria", "Recommendation", "advise", "format_recommendation"]


class Approach(StrEnum):
    RAG = "rag"
    FINE_TUNE = "fine-tune"
    HYBRID = "hybrid (fine-tune + RAG)"
    BASE = "base model"


class UpdateFrequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    RARELY = "rarely"


@dataclass(frozen=True)
class Criteria:
    """What the team knows about its situation; every field is optional."""

    updates: UpdateFrequency | None = None          # how often the knowledge changes
    latency_ms: float | None = None                 # budget per answer (compared with the median)
    needs_style: bool = False                       # a strict style or output format is required
    training_budget_usd: float | None = None        # what one training run may cost
    training_examples: int | None = None            # labelled examples available
    privacy_local_only: bool = False                # nothing may leave the machine

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


@dataclass
class Recommendation:
    approach: Approach
    confidence: str                                 # "high" | "medium" | "low"
    reasons: list[str]
    next_steps: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"approach": str(self.approach), "confidence": self.confidence,
                "reasons": list(self.reasons), "next_steps": list(self.next_steps),
                "evidence": self.evidence}


_LEVELS = ["low", "medium", "high"]
_SIMPLICITY = [Approach.BASE, Approach.RAG, Approach.FINE_TUNE, Approach.HYBRID]
_FAMILY = {"base": Approach.BASE, "rag": Approach.RAG, "ft": Approach.FINE_TUNE, "ft+rag": Approach.HYBRID}
_RERANKER = "cross-encoder/ms-marco-MiniLM-L-6-v2"
_FEW_EXAMPLES = 100
_SMALL_RUN = 50
_CLOSE = 0.02   # accuracies this close count as overlapping when a variant has no interval


# --------------------------------------------------------------------------------------------
# Formatting helpers


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _pct0(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0 or abs(value) >= 1:
        return f"${value:,.2f}"
    digits = max(2, 1 - math.floor(math.log10(abs(value))))
    return f"${value:.{digits}f}"


def _secs(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.1f} s"


# --------------------------------------------------------------------------------------------
# Candidates from a run


@dataclass
class _Candidate:
    approach: Approach
    label: str
    accuracy: float
    ci: tuple[float, float] | None
    n: int | None
    k: int | None
    adapter: str | None
    latency_ms: float | None          # median (or mean) per answer
    p90_ms: float | None
    cost_per_1k: float | None
    training_cost: float | None
    training_seconds: float | None
    recall: float | None
    dataset: dict[str, Any] | None
    misses_latency: bool = False
    over_budget: bool = False

    @property
    def acc_text(self) -> str:
        if self.ci is None:
            return _pct(self.accuracy)
        return f"{_pct(self.accuracy)} (95% CI {100 * self.ci[0]:.1f}–{100 * self.ci[1]:.1f})"

    @property
    def feasible(self) -> bool:
        return not (self.misses_latency or self.over_budget)

    def to_dict(self) -> dict[str, Any]:
        return {"approach": str(self.approach), "label": self.label, "accuracy": self.accuracy,
                "ci": list(self.ci) if self.ci else None, "n": self.n, "k": self.k,
                "adapter": self.adapter, "latency_ms_median": self.latency_ms, "latency_ms_p90": self.p90_ms,
                "cost_per_1k_usd": self.cost_per_1k, "training_cost_usd": self.training_cost,
                "training_seconds": self.training_seconds, "recall_at_k": self.recall,
                "misses_latency_budget": self.misses_latency, "over_training_budget": self.over_budget}


def _candidate(variant: dict[str, Any], criteria: Criteria) -> _Candidate | None:
    approach = _FAMILY.get(str(variant.get("variant")))
    accuracy = _num(variant.get("accuracy"))
    if approach is None or accuracy is None:
        return None
    ci = variant.get("ci")
    interval = None
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in (_num(ci[0]), _num(ci[1])):
        interval = (min(_num(ci[0]), _num(ci[1])), max(_num(ci[0]), _num(ci[1])))
    latency = _num(summary_field(variant, "latency_ms", "median"))
    if latency is None:
        latency = _num(summary_field(variant, "latency_ms", "mean"))
    n = _num(variant.get("n"))
    k = _num(variant.get("k"))
    dataset = summary_field(variant, "training", "dataset")
    cand = _Candidate(
        approach=approach, label=str(variant.get("label") or variant.get("variant")), accuracy=accuracy,
        ci=interval, n=int(n) if n is not None else None, k=int(k) if k is not None else None,
        adapter=variant.get("adapter") if isinstance(variant.get("adapter"), str) else None,
        latency_ms=latency, p90_ms=_num(summary_field(variant, "latency_ms", "p90")),
        cost_per_1k=_num(variant.get("cost_per_1k_usd")),
        training_cost=_num(summary_field(variant, "training", "cost_usd")),
        training_seconds=_num(summary_field(variant, "training", "wall_seconds")),
        recall=_num(summary_field(variant, "retrieval", "recall_at_k")),
        dataset=dataset if isinstance(dataset, dict) else None)
    if criteria.latency_ms is not None and latency is not None:
        cand.misses_latency = latency > criteria.latency_ms
    if approach in (Approach.FINE_TUNE, Approach.HYBRID):
        if criteria.no_training:
            cand.over_budget = True
        elif criteria.training_budget_usd is not None and cand.training_cost is not None:
            cand.over_budget = cand.training_cost > criteria.training_budget_usd
    return cand


def _overlaps(a: _Candidate, b: _Candidate) -> bool:
    if a.ci is not None and b.ci is not None:
        return a.ci[0] <= b.ci[1] and b.ci[0] <= a.ci[1]
    return abs(a.accuracy - b.accuracy) <= _CLOSE


def _best(cands: list[_Candidate]) -> _Candidate:
    # most accurate; ties go to the simpler approach, then the cheaper (smaller k)
    return max(cands, key=lambda c: (c.accuracy, -_SIMPLICITY.index(c.approach), -(c.k or 0)))


def _allowed(criteria: Criteria) -> list[Approach]:
    allowed = list(_SIMPLICITY)
    if criteria.needs_style and not criteria.no_training:
        allowed = [Approach.FINE_TUNE, Approach.HYBRID]
    if criteria.frequent_updates:
        allowed = [a for a in allowed if a not in (Approach.BASE, Approach.FINE_TUNE)]
    if criteria.no_training:
        allowed = [a for a in allowed if a in (Approach.BASE, Approach.RAG)]
    return allowed


# --------------------------------------------------------------------------------------------
# Reasons from the criteria (shared by both paths)


def _criteria_reasons(criteria: Criteria) -> list[str]:
    reasons = []
    if criteria.frequent_updates:
        reasons.append(
            f"Your knowledge changes {criteria.updates}: a fine-tuned model keeps answering what it was "
            "trained on until it is retrained, while RAG picks up a change as soon as the document is "
            "re-ingested (Ovadia et al., 2023: retrieval beats fine-tuning for new knowledge).")
    elif criteria.updates == UpdateFrequency.RARELY:
        reasons.append("Your knowledge changes rarely, so a fine-tuned model would seldom need retraining.")
    if criteria.needs_style:
        if criteria.no_training:
            reasons.append("You need a strict style or format but have no training budget: enforce it "
                           "with instructions and few-shot examples in the prompt, and validate outputs.")
        else:
            reasons.append("You need a strict style or format: fine-tuning learns form from examples "
                           "reliably, where prompting alone drifts.")
    if criteria.needs_style and criteria.training_examples is not None and not criteria.no_training:
        if criteria.training_examples < _FEW_EXAMPLES:
            reasons.append(f"Only {criteria.training_examples} labelled examples: a style fine-tune usually "
                           f"needs a few hundred; generate more from the knowledge base.")
        else:
            reasons.append(f"{criteria.training_examples} labelled examples are enough for a style fine-tune.")
    if criteria.no_training:
        reasons.append("Training budget is $0: fine-tuning is ruled out.")
    if criteria.privacy_local_only:
        reasons.append("Local only: infuse ingests, retrieves, trains and generates on this machine; "
                       "keep it that way by not pointing it at a hosted model API.")
    return reasons


def _criteria_only(criteria: Criteria, note: str | None) -> Recommendation:
    reasons = [note] if note else []
    reasons += _criteria_reasons(criteria)
    fresh, style = criteria.frequent_updates, criteria.needs_style and not criteria.no_training
    if style and fresh:
        approach = Approach.HYBRID
        reasons.append("Both: fine-tune for the form, retrieve for the facts (RAFT, Zhang et al., 2024, "
                       "trains the model to answer from retrieved documents).")
    elif style:
        approach = Approach.FINE_TUNE
    elif fresh:
        approach = Approach.RAG
    else:
        approach = Approach.RAG
        reasons.append("Nothing decisive yet, so start with RAG: no training, cheap to keep current, and "
                       "the stronger method for injecting new knowledge (Ovadia et al., 2023). "
                       "Measure before investing in fine-tuning.")
    if criteria.latency_ms is not None and approach in (Approach.RAG, Approach.HYBRID):
        reasons.append(f"RAG adds retrieval and a longer prompt to every answer: check it fits your "
                       f"{criteria.latency_ms:g} ms budget with a compare run.")
    level = 1 if (fresh or style) else 0
    if style and criteria.training_examples is not None and criteria.training_examples < _FEW_EXAMPLES:
        level -= 1
    steps = [
        "infuse questions generate --per-chunk 2      # or: infuse questions import FILE --format mc|qa|squad",
        "infuse compare --questions NAME --variants base,rag,ft,ft+rag -k 1,3,5 --adapter ADAPTER",
        "infuse advise --run RUN                       # this advice again, with the measurements",
    ]
    steps += _approach_steps(approach, criteria, None, None, {})
    return Recommendation(approach=approach, confidence=_LEVELS[max(0, level)], reasons=reasons,
                          next_steps=steps, evidence={"criteria": criteria.to_dict(), "measured": False})


# --------------------------------------------------------------------------------------------
# Next steps


def _paraphrase_trend(cands: list[_Candidate]) -> tuple[_Candidate, _Candidate] | None:
    """(fewest, most) paraphrases among the fine-tuned-only variants, when more paraphrases helped."""
    points = []
    for c in cands:
        if c.approach != Approach.FINE_TUNE or c.dataset is None:
            continue
        if c.dataset.get("kind") == "cpt":
            points.append((0.0, c))
        elif c.dataset.get("kind") == "paraphrase" and _num(c.dataset.get("paraphrases")) is not None:
            points.append((_num(c.dataset["paraphrases"]), c))
    if len({x for x, _ in points}) < 2:
        return None
    low = min(points, key=lambda p: (p[0], -p[1].accuracy))
    high = max(points, key=lambda p: (p[0], p[1].accuracy))
    return (low[1], high[1]) if high[1].accuracy > low[1].accuracy else None


def _approach_steps(approach: Approach, criteria: Criteria, chosen: _Candidate | None,
                    cands: list[_Candidate] | None, info: dict[str, Any]) -> list[str]:
    qname = info.get("questions") or "NAME"
    cands = cands or []
    steps: list[str] = []
    rag_ks = sorted({c.k for c in cands if c.approach == Approach.RAG and c.k is not None})
    if approach == Approach.BASE:
        steps.append("infuse serve      # the base model already answers well enough; nothing to inject")
        steps.append("infuse questions generate --per-chunk 2 && infuse compare --questions NEW "
                     "--variants base,rag -k 1,3   # re-check on new questions when documents change")
    elif approach == Approach.RAG:
        if len(rag_ks) < 3:
            steps.append(f"infuse compare --questions {qname} --variants rag -k 1,3,5   # find the best k")
        recall = chosen.recall if chosen is not None else None
        reason = (f"recall@k is {_pct(recall)}; " if recall is not None and recall < 0.95 else "")
        steps.append(f"{reason}try a reranker: INFUSE_SEARCH__RERANKER={_RERANKER} infuse compare "
                     f"--questions {qname} --variants rag -k {chosen.k if chosen and chosen.k else 3}")
        steps.append("infuse ingest DOCS --prune    # after every document change (only changed files are re-read)")
        if chosen is not None and chosen.misses_latency:
            steps.append("cut latency: fewer passages (-k 1), a smaller model, or --max-tokens")
        steps.append("infuse serve    # grounded answers with citations")
    elif approach == Approach.FINE_TUNE:
        trend = _paraphrase_trend(cands)
        paraphrases = 5
        if trend is not None:
            most = _num((trend[1].dataset or {}).get("paraphrases")) or 5
            paraphrases = int(max(5, 2 * most))
        steps.append(f"infuse dataset build --kind paraphrase --paraphrases {paraphrases}")
        steps.append("infuse tune --dataset DATASET --method lora        # registers DATASET-lora")
        steps.append(f"infuse compare --questions {qname} --variants ft,ft+rag --adapter DATASET-lora -k 3")
        adapter = chosen.adapter if chosen is not None and chosen.adapter else "ADAPTER"
        steps.append(f"infuse serve --adapter {adapter}")
        if chosen is not None and chosen.training_seconds is not None:
            steps.append(f"retrain after each knowledge change (training took {_secs(chosen.training_seconds)} here)")
    elif approach == Approach.HYBRID:
        steps.append("infuse dataset build --kind raft     # questions with retrieved and distractor passages (RAFT)")
        steps.append("infuse tune --dataset DATASET --method lora")
        steps.append(f"infuse compare --questions {qname} --variants rag,ft+rag --adapter DATASET-lora -k 1,3,5")
        adapter = chosen.adapter if chosen is not None and chosen.adapter else "ADAPTER"
        steps.append(f"infuse serve --adapter {adapter}    # answers with retrieval through the adapter")
        steps.append("infuse ingest DOCS --prune    # after every document change; retrain only when the style changes")
    if criteria.needs_style and criteria.training_examples is not None and \
            criteria.training_examples < _FEW_EXAMPLES and approach in (Approach.FINE_TUNE, Approach.HYBRID):
        steps.insert(0, "infuse dataset build --kind qa --per-chunk 3    # more examples in your format, from the knowledge base")
    return steps


# --------------------------------------------------------------------------------------------
# The measured path


def _freshness_reasons(summary: dict[str, Any], evidence: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
    fresh = summary.get("freshness")
    if not isinstance(fresh, dict):
        return [], {}
    rows = [v for v in fresh.get("variants") or [] if isinstance(v, dict)]
    stale = {str(v.get("label")): _num(v.get("stale_share")) for v in rows if _num(v.get("stale_share")) is not None}
    evidence["freshness"] = {"stale_share": stale, "changed_facts": fresh.get("changed_facts"),
                             "reindex_seconds": _num(fresh.get("reindex_seconds")),
                             "retrain_seconds": {str(v.get("label")): _num(v.get("retrain_seconds"))
                                                 for v in rows if _num(v.get("retrain_seconds")) is not None}}
    reasons = []
    changed = _num(fresh.get("changed_facts"))
    scope = f"the {changed:g} changed facts" if changed is not None else "the changed facts"
    stale_models = [v for v in rows if _num(v.get("stale_share")) is not None and v.get("variant") == "ft"]
    fresh_models = [v for v in rows if _num(v.get("stale_share")) is not None and v.get("variant") != "ft"]

    def accuracy(v: dict[str, Any]) -> str:
        acc = _num(v.get("accuracy"))
        return "" if acc is None else f" (accuracy on them {_pct0(acc)})"

    parts = [f"{v.get('label')} still answered the old value for {_pct0(_num(v['stale_share']))} of {scope}"
             f"{accuracy(v)}" for v in stale_models]
    parts += [f"{v.get('label')} {_pct0(_num(v['stale_share']))}{accuracy(v)}" for v in fresh_models]
    if parts:
        reasons.append("After the update, " + "; ".join(parts) + ".")
    reindex = _num(fresh.get("reindex_seconds"))
    retrains = [(str(v.get("label")), _num(v.get("retrain_seconds"))) for v in rows
                if _num(v.get("retrain_seconds")) is not None]
    if reindex is not None and retrains:
        label, seconds = retrains[0]
        reasons.append(f"Applying the update: re-indexing took {_secs(reindex)}, retraining {label} "
                       f"{_secs(seconds)}.")
    return reasons, stale


def _ruled_out_because(approach: Approach, criteria: Criteria) -> str:
    if criteria.no_training and approach in (Approach.FINE_TUNE, Approach.HYBRID):
        return "your training budget is $0"
    if criteria.frequent_updates and approach in (Approach.FINE_TUNE, Approach.BASE):
        return (f"your knowledge changes {criteria.updates} and it only learns a change by retraining "
                f"(it would answer stale facts)")
    if criteria.needs_style and approach in (Approach.BASE, Approach.RAG):
        return "it cannot guarantee your style or format without fine-tuning"
    return "your criteria rule it out"


def _measured(criteria: Criteria, summary: dict[str, Any], cands: list[_Candidate]) -> Recommendation:
    questions = summary.get("questions")
    qname = questions.get("name") if isinstance(questions, dict) else None
    qcount = _num(questions.get("count")) if isinstance(questions, dict) else None
    info = {"questions": qname}
    evidence: dict[str, Any] = {"criteria": criteria.to_dict(), "measured": True, "run": summary.get("run"),
                                "questions": qname}
    reasons: list[str] = []
    penalties = 0

    best_any = _best(cands)
    where = f" on {int(qcount)} questions" + (f" of {qname}" if qname else "") if qcount else ""
    reasons.append(f"Best measured variant: {best_any.label} at {best_any.acc_text}{where}.")

    # one representative per approach: the most accurate that meets the constraints
    reps: dict[Approach, _Candidate] = {}
    for approach in _SIMPLICITY:
        family = [c for c in cands if c.approach == approach]
        if family:
            ok = [c for c in family if c.feasible]
            reps[approach] = _best(ok) if ok else _best(family)
    evidence["candidates"] = {str(a): c.to_dict() for a, c in reps.items()}
    evidence["best"] = best_any.to_dict()

    allowed = _allowed(criteria)
    pool = [reps[a] for a in allowed if a in reps]
    if not pool:
        # the approach the criteria call for was not measured: recommend it, quote what was measured
        rec = _criteria_only(criteria, None)
        rec.reasons = reasons + [f"The run has no {', '.join(str(a) for a in allowed)} variant, so this "
                                 f"follows your criteria; measure it next."] + rec.reasons
        rec.evidence.update(evidence)
        rec.confidence = "medium" if rec.confidence == "high" else rec.confidence
        rec.next_steps = _approach_steps(rec.approach, criteria, None, cands, info)
        return rec

    feasible = [c for c in pool if c.feasible]
    top = _best(feasible or pool)
    chosen = next(c for a in _SIMPLICITY for c in (feasible or pool) if c.approach == a and _overlaps(c, top))
    approach = chosen.approach

    if chosen is not top:
        why = {Approach.BASE: "the base model already answers as well as the best variant: nothing to inject",
               Approach.RAG: "prefer RAG: simpler (no training) and fresh after an update",
               Approach.FINE_TUNE: "prefer the fine-tuned model alone: no retrieval step per answer"}
        reasons.append(f"{chosen.label} at {chosen.acc_text} is within the 95% interval of {top.label} "
                       f"({top.acc_text}): {why.get(approach, 'the simpler option')}.")
    else:
        beaten = [reps[a] for a in _SIMPLICITY[:_SIMPLICITY.index(approach)] if a in reps and a in allowed]
        for other in beaten:
            if other.accuracy >= chosen.accuracy or _overlaps(other, chosen):
                continue   # set aside for a constraint (latency, training budget), said below
            reasons.append(f"{chosen.label} at {chosen.acc_text} is clearly ahead of {other.label} at "
                           f"{other.acc_text} (the intervals do not overlap).")
    if approach != Approach.BASE and Approach.BASE in reps and reps[Approach.BASE] is not chosen:
        base = reps[Approach.BASE]
        if _overlaps(base, top):
            reasons.append(f"The base model ({base.label}) already reaches {base.acc_text}, within the "
                           f"interval of the best, but it cannot learn changes to your documents.")
        elif not any(f" {base.label} at" in r for r in reasons):
            reasons.append(f"Without injection the base model scores {base.acc_text}.")

    # the best variant the criteria ruled out: clearly better (a conflict) or as good (worth saying)
    excluded = [c for a, c in reps.items() if a not in allowed]
    if excluded:
        other = _best(excluded)
        if other.accuracy > chosen.accuracy or _overlaps(other, chosen):
            if not _overlaps(other, chosen):
                penalties += 1
                lead = f"{other.label} scores higher ({other.acc_text})"
            else:
                lead = f"{other.label} is about as accurate ({other.acc_text})"
            reasons.append(f"{lead}, but {_ruled_out_because(other.approach, criteria)}.")

    # latency
    if criteria.latency_ms is not None:
        budget = f"{criteria.latency_ms:g} ms"
        rag = reps.get(Approach.RAG)
        ft = reps.get(Approach.FINE_TUNE)
        if rag is not None and rag.misses_latency and ft is not None and not ft.misses_latency:
            reasons.append(f"Latency: {rag.label} takes {_ms(rag.latency_ms)} per answer (median), over your "
                           f"{budget} budget, while {ft.label} meets it at {_ms(ft.latency_ms)}.")
        elif chosen.latency_ms is not None and not chosen.misses_latency:
            reasons.append(f"Latency: {chosen.label} answers in {_ms(chosen.latency_ms)} (median"
                           + (f", p90 {_ms(chosen.p90_ms)}" if chosen.p90_ms is not None else "")
                           + f"), within your {budget} budget.")
        for a in allowed:
            family = [c for c in cands if c.approach == a]
            if a in reps and family and _best(family) is not reps[a] and _best(family).misses_latency:
                slow = _best(family)
                reasons.append(f"Latency: {slow.label} is more accurate ({slow.acc_text}) but takes "
                               f"{_ms(slow.latency_ms)} per answer (median), over your {budget} budget; "
                               f"{reps[a].label} meets it at {_ms(reps[a].latency_ms)}.")
        missing = [c for a, c in reps.items() if a in allowed and c.misses_latency and c is not chosen
                   and not (a == Approach.RAG and ft is not None and not ft.misses_latency)]
        for c in missing:
            reasons.append(f"Latency: {c.label} takes {_ms(c.latency_ms)} per answer (median), over your {budget} budget.")
        if chosen.misses_latency:
            penalties += 1
            reasons.append(f"No allowed variant meets your {budget} budget; {chosen.label} takes "
                           f"{_ms(chosen.latency_ms)} (median).")
        if chosen.latency_ms is None:
            reasons.append("The run has no latency for the chosen variant.")

    # training cost
    if approach in (Approach.FINE_TUNE, Approach.HYBRID) and chosen.training_cost is not None:
        if criteria.training_budget_usd is not None:
            verdict = "over" if chosen.over_budget else "within"
            reasons.append(f"Training {chosen.adapter or chosen.label} cost {_usd(chosen.training_cost)}"
                           + (f" ({_secs(chosen.training_seconds)})" if chosen.training_seconds else "")
                           + f", {verdict} your {_usd(criteria.training_budget_usd)} budget.")
            if chosen.over_budget:
                penalties += 1
        else:
            reasons.append(f"Training {chosen.adapter or chosen.label} cost {_usd(chosen.training_cost)} once"
                           + (f" ({_secs(chosen.training_seconds)})." if chosen.training_seconds else "."))
    over = {} if criteria.no_training else {
        c.adapter or c.label: c for c in reps.values()
        if c.over_budget and c.training_cost is not None and (c.adapter or c.label) != (chosen.adapter or chosen.label)}
    for c in over.values():
        reasons.append(f"Training {c.adapter or c.label} cost {_usd(c.training_cost)}, over your "
                       f"{_usd(criteria.training_budget_usd)} budget.")

    # cost per 1k questions, when it separates the candidates
    if chosen.cost_per_1k is not None:
        reasons.append(f"Serving {chosen.label} costs {_usd(chosen.cost_per_1k)} per 1,000 questions.")

    fresh_reasons, stale = _freshness_reasons(summary, evidence)
    reasons += fresh_reasons
    reasons += _criteria_reasons(criteria)

    # style + frequent updates: hybrid is the answer even if only rag was measured
    if criteria.needs_style and criteria.frequent_updates and not criteria.no_training and approach == Approach.RAG:
        approach = Approach.HYBRID
        penalties += 1

    trend = _paraphrase_trend(cands)
    if trend is not None and approach in (Approach.FINE_TUNE, Approach.HYBRID):
        low, high = trend
        reasons.append(f"More paraphrases helped fine-tuning: {low.label} {_pct(low.accuracy)} -> "
                       f"{high.label} {_pct(high.accuracy)} (Ovadia et al., 2023).")

    n = chosen.n if chosen.n is not None else (int(qcount) if qcount else None)
    if n is not None and n < _SMALL_RUN:
        penalties += 1
        reasons.append(f"Only {n} questions: the intervals are wide; a larger question set would sharpen this.")
    if chosen.ci is None or top.ci is None:
        penalties += 1
    if approach != chosen.approach:
        reasons.append(f"Your criteria call for {approach}, which this run did not measure as such.")
    evidence["chosen"] = chosen.to_dict()
    evidence["reference"] = top.label
    evidence["allowed"] = [str(a) for a in allowed]
    reasons = list(dict.fromkeys(reasons))
    return Recommendation(approach=approach, confidence=_LEVELS[max(0, 2 - penalties)], reasons=reasons,
                          next_steps=_approach_steps(approach, criteria, chosen, cands, info),
                          evidence=evidence)


def advise(criteria: Criteria, summary: dict[str, Any] | None = None) -> Recommendation:
    """Recommend an approach from the criteria and, when given, a compare run's ``summary.json``."""
    if summary is None:
        return _criteria_only(criteria, None)
    variants = summary.get("variants") if isinstance(summary, dict) else None
    cands = [c for v in variants or [] if isinstance(v, dict) and (c := _candidate(v, criteria))]
    if not cands:
        return _criteria_only(criteria, "The run has no variant with a measured accuracy; "
                                        "advice from your criteria only.")
    return _measured(criteria, summary, cands)


def format_recommendation(rec: Recommendation, width: int = 100) -> str:
    """The recommendation as plain text for a terminal."""
    lines = [f"Recommendation: {rec.approach} (confidence: {rec.confidence})", "", "Why:"]
    for reason in rec.reasons:
        lines += textwrap.wrap(reason, width=width, initial_indent="  - ", subsequent_indent="    ")
    lines += ["", "Next:"]
    for step in rec.next_steps:
        lines.append(f"  $ {step}" if re.match(r"(\w+=\S+\s+)*infuse ", step) else f"  - {step}")
    return "\n".join(lines)
