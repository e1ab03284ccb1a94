"""Explaining: a :class:`~infuse.advice.decide.Decision` in English, and what to run next.

Only wording lives here: each :class:`~infuse.advice.decide.ReasonCode` has one sentence that
quotes the decision's numbers, and the next steps are ``infuse`` commands for the chosen
approach. Changing a sentence never changes a recommendation (that is :mod:`infuse.advice.decide`).
"""

from __future__ import annotations

import math
import re
import shlex
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infuse.advice.decide import Approach, Candidate, Criteria, Decision, Reason, ReasonCode, RuledOut
from infuse.evaluation.runs import FreshnessRow

__all__ = ["Recommendation", "explain", "reason_text", "next_steps", "format_recommendation", "with_workspace"]

_RERANKER = "cross-encoder/ms-marco-MiniLM-L-6-v2"


@dataclass
class Recommendation:
    """The advice as people read it (and ``infuse advise --json`` prints it)."""

    approach: Approach
    confidence: str  # "high" | "medium" | "low"
    reasons: list[str]
    next_steps: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)
    decision: Decision | None = field(default=None, repr=False, compare=False)  # the same advice as data

    def to_dict(self) -> dict[str, Any]:
        return {
            "approach": str(self.approach),
            "confidence": self.confidence,
            "reasons": list(self.reasons),
            "next_steps": list(self.next_steps),
            "evidence": self.evidence,
        }


# --------------------------------------------------------------------------------------------
# Number formats


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _pct0(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _ci(ci: tuple[float, float] | None) -> str:
    return "n/a" if ci is None else f"{100 * ci[0]:.0f}-{100 * ci[1]:.0f}%"


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


def _acc(c: Candidate) -> str:
    if c.ci is None:
        return _pct(c.accuracy)
    return f"{_pct(c.accuracy)} (95% CI {100 * c.ci[0]:.1f}–{100 * c.ci[1]:.1f})"


# --------------------------------------------------------------------------------------------
# One sentence per reason code


def _best_measured(f: dict[str, Any]) -> str:
    v, count, questions = f["variant"], f["count"], f["questions"]
    where = f" on {int(count)} questions" + (f" of {questions}" if questions else "") if count else ""
    return f"Best measured variant: {v.label} at {_acc(v)}{where}."


_PREFERRED = {
    Approach.BASE: "the base model already answers as well as the best variant: nothing to inject",
    Approach.RAG: "prefer RAG: simpler (no training) and fresh after an update",
    Approach.FINE_TUNE: "prefer the fine-tuned model alone: no retrieval step per answer",
}


def _ruled_out(f: dict[str, Any]) -> str:
    v = f["variant"]
    lead = f"{v.label} scores higher ({_acc(v)})" if f["better"] else f"{v.label} is about as accurate ({_acc(v)})"
    because = {
        RuledOut.NO_TRAINING_BUDGET: "your training budget is $0",
        RuledOut.STALE: (
            f"your knowledge changes {f['updates']} and it only learns a change by retraining "
            f"(it would answer stale facts)"
        ),
        RuledOut.NO_STYLE: "it cannot guarantee your style or format without fine-tuning",
        RuledOut.CRITERIA: "your criteria rule it out",
    }[f["because"]]
    return f"{lead}, but {because}."


def _nothing_works(f: dict[str, Any]) -> str:
    v, chance = f["variant"], f["chance"]
    against = f"chance is {_pct(chance)}" if chance > 0 else "these are open questions (chance is 0)"
    return (
        f"None of these answers; try a stronger model or check the questions (do their answers appear "
        f"in your documents?). The best, {v.label}, reaches {_acc(v)}; a variant must reach "
        f"{_pct(f['floor'])} with its interval above chance ({against})."
    )


def _below_floor(f: dict[str, Any]) -> str:
    listed = ", ".join(f"{v.label} ({_pct(v.accuracy)})" for v in f["variants"])
    return (
        f"{listed} {'does' if len(f['variants']) == 1 else 'do'} not clear the floor "
        f"({_pct(f['floor'])}, interval above chance {_pct(f['chance'])}): set aside."
    )


def _within_latency(f: dict[str, Any]) -> str:
    v = f["variant"]
    return (
        f"Latency: {v.label} answers in {_ms(v.latency_ms)} (median"
        + (f", p90 {_ms(v.p90_ms)}" if v.p90_ms is not None else "")
        + f"), within your {f['budget_ms']:g} ms budget."
    )


def _training_cost(f: dict[str, Any]) -> str:
    v, budget = f["variant"], f["budget_usd"]
    name = v.adapter or v.label
    if budget is None:
        return f"Training {name} cost {_usd(v.training_cost)} once" + (
            f" ({_secs(v.training_seconds)})." if v.training_seconds else "."
        )
    return (
        f"Training {name} cost {_usd(v.training_cost)}"
        + (f" ({_secs(v.training_seconds)})" if v.training_seconds else "")
        + f", {'over' if f['over'] else 'within'} your {_usd(budget)} budget."
    )


def _stale_after_update(f: dict[str, Any]) -> str:
    changed = f["changed"]
    scope = f"the {changed:g} changed facts" if changed is not None else "the changed facts"

    def accuracy(row: FreshnessRow) -> str:
        return "" if row.accuracy is None else f" (accuracy on them {_pct0(row.accuracy)})"

    parts = [
        f"{v.label} still answered the old value for {_pct0(v.stale_share)} of {scope}{accuracy(v)}" for v in f["stale"]
    ]
    parts += [f"{v.label} {_pct0(v.stale_share)}{accuracy(v)}" for v in f["fresh"]]
    return "After the update, " + "; ".join(parts) + "."


_SENTENCES: dict[ReasonCode, Callable[[dict[str, Any]], str]] = {
    ReasonCode.FREQUENT_UPDATES: lambda f: (
        f"Your knowledge changes {f['updates']}: a fine-tuned model keeps answering what it was "
        "trained on until it is retrained, while RAG picks up a change as soon as the document is "
        "re-ingested (Ovadia et al., 2023: retrieval beats fine-tuning for new knowledge)."
    ),
    ReasonCode.RARE_UPDATES: lambda f: (
        "Your knowledge changes rarely, so a fine-tuned model would seldom need retraining."
    ),
    ReasonCode.STYLE_WITHOUT_TRAINING: lambda f: (
        "You need a strict style or format but have no training budget: enforce it "
        "with instructions and few-shot examples in the prompt, and validate outputs."
    ),
    ReasonCode.STYLE_NEEDS_FINE_TUNE: lambda f: (
        "You need a strict style or format: fine-tuning learns form from examples "
        "reliably, where prompting alone drifts."
    ),
    ReasonCode.FEW_EXAMPLES: lambda f: (
        f"Only {f['examples']} labelled examples: a style fine-tune usually "
        f"needs a few hundred; generate more from the knowledge base."
    ),
    ReasonCode.ENOUGH_EXAMPLES: lambda f: f"{f['examples']} labelled examples are enough for a style fine-tune.",
    ReasonCode.NO_TRAINING_BUDGET: lambda f: "Training budget is $0: fine-tuning is ruled out.",
    ReasonCode.LOCAL_ONLY: lambda f: (
        "Local only: infuse ingests, retrieves, trains and generates on this machine; "
        "keep it that way by not pointing it at a hosted model API."
    ),
    ReasonCode.NO_MEASURED_VARIANT: lambda f: (
        "The run has no variant with a measured accuracy; advice from your criteria only."
    ),
    ReasonCode.STYLE_AND_FRESH: lambda f: (
        "Both: fine-tune for the form, retrieve for the facts (RAFT, Zhang et al., 2024, "
        "trains the model to answer from retrieved documents)."
    ),
    ReasonCode.NOTHING_DECISIVE: lambda f: (
        "Nothing decisive yet, so start with RAG: no training, cheap to keep current, and "
        "the stronger method for injecting new knowledge (Ovadia et al., 2023). "
        "Measure before investing in fine-tuning."
    ),
    ReasonCode.CHECK_RAG_LATENCY: lambda f: (
        f"RAG adds retrieval and a longer prompt to every answer: check it fits your "
        f"{f['budget_ms']:g} ms budget with a compare run."
    ),
    ReasonCode.BEST_MEASURED: _best_measured,
    ReasonCode.APPROACH_NOT_MEASURED: lambda f: (
        f"The run has no {', '.join(str(a) for a in f['approaches'])} variant, so this "
        f"follows your criteria; measure it next."
    ),
    ReasonCode.WITHIN_INTERVAL: lambda f: (
        f"{f['variant'].label} at {_acc(f['variant'])} is within the 95% interval of {f['reference'].label} "
        f"({_acc(f['reference'])}): {_PREFERRED.get(f['approach'], 'the simpler option')}."
    ),
    ReasonCode.CLEARLY_AHEAD: lambda f: (
        f"{f['variant'].label} at {_acc(f['variant'])} is clearly ahead of {f['other'].label} at "
        f"{_acc(f['other'])} (the intervals do not overlap)."
    ),
    ReasonCode.BASE_WITHIN_INTERVAL: lambda f: (
        f"The base model ({f['variant'].label}) already reaches {_acc(f['variant'])}, within the "
        f"interval of the best, but it cannot learn changes to your documents."
    ),
    ReasonCode.BASE_SCORE: lambda f: f"Without injection the base model scores {_acc(f['variant'])}.",
    ReasonCode.RULED_OUT: _ruled_out,
    ReasonCode.RAG_OVER_LATENCY_FT_WITHIN: lambda f: (
        f"Latency: {f['rag'].label} takes {_ms(f['rag'].latency_ms)} per answer (median), over your "
        f"{f['budget_ms']:g} ms budget, while {f['ft'].label} meets it at {_ms(f['ft'].latency_ms)}."
    ),
    ReasonCode.WITHIN_LATENCY: _within_latency,
    ReasonCode.ACCURATE_BUT_SLOW: lambda f: (
        f"Latency: {f['variant'].label} is more accurate ({_acc(f['variant'])}) but takes "
        f"{_ms(f['variant'].latency_ms)} per answer (median), over your {f['budget_ms']:g} ms budget; "
        f"{f['instead'].label} meets it at {_ms(f['instead'].latency_ms)}."
    ),
    ReasonCode.OVER_LATENCY: lambda f: (
        f"Latency: {f['variant'].label} takes {_ms(f['variant'].latency_ms)} per answer (median), "
        f"over your {f['budget_ms']:g} ms budget."
    ),
    ReasonCode.NONE_WITHIN_LATENCY: lambda f: (
        f"No allowed variant meets your {f['budget_ms']:g} ms budget; {f['variant'].label} takes "
        f"{_ms(f['variant'].latency_ms)} (median)."
    ),
    ReasonCode.NO_LATENCY: lambda f: "The run has no latency for the chosen variant.",
    ReasonCode.TRAINING_COST: _training_cost,
    ReasonCode.OVER_TRAINING_BUDGET: lambda f: (
        f"Training {f['variant'].adapter or f['variant'].label} cost {_usd(f['variant'].training_cost)}, over your "
        f"{_usd(f['budget_usd'])} budget."
    ),
    ReasonCode.SERVING_COST: lambda f: (
        f"Serving {f['variant'].label} costs {_usd(f['variant'].cost_per_1k)} per 1,000 questions."
    ),
    ReasonCode.STALE_AFTER_UPDATE: _stale_after_update,
    ReasonCode.UPDATE_TIMES: lambda f: (
        f"Applying the update: re-indexing took {_secs(f['reindex_seconds'])}, retraining {f['label']} "
        f"{_secs(f['retrain_seconds'])}."
    ),
    ReasonCode.PARAPHRASES_HELPED: lambda f: (
        f"More paraphrases helped fine-tuning: {f['low'].label} {_pct(f['low'].accuracy)} -> "
        f"{f['high'].label} {_pct(f['high'].accuracy)} (Ovadia et al., 2023)."
    ),
    ReasonCode.SMALL_RUN: lambda f: (
        f"Only {f['n']} questions: the intervals are wide; a larger question set would sharpen this."
    ),
    ReasonCode.NOT_MEASURED_AS_SUCH: lambda f: (
        f"Your criteria call for {f['approach']}, which this run did not measure as such."
    ),
    ReasonCode.NOTHING_WORKS: _nothing_works,
    ReasonCode.BARELY_ANSWERS: lambda f: (
        f"{f['variant'].label} barely answers: its interval reaches below the floor of {_pct(f['floor'])} "
        "(confidence lowered); a larger question set or a stronger model would tell."
    ),
    ReasonCode.TIMINGS_NOISY: lambda f: (
        f["caveat"]
        + (
            " The latency budget was weighed on these numbers, so the confidence is lower."
            if f["latency_matters"]
            else ""
        )
    ),
    ReasonCode.BELOW_FLOOR: _below_floor,
    ReasonCode.STYLE_GAIN: lambda f: (
        f"Fine-tuning teaches the house style: {_pct0(f['styled'].style)} of {f['styled'].label}'s answers follow it "
        f"(95% CI {_ci(f['styled'].style_ci)}) vs {_pct0(f['unstyled'].style)} for {f['unstyled'].label}"
        + (" (your answers must follow a style)." if f["required"] else ".")
    ),
    ReasonCode.MISSES_STYLE: lambda f: (
        "Set aside because fewer than "
        f"{_pct0(f['floor'])} of their answers follow the required style: "
        + ", ".join(f"{c.label} {_pct0(c.style)}" for c in f["variants"])
        + "."
    ),
    ReasonCode.LEAKS: lambda f: (
        f"{f['variant'].label} leaks past access lists: asked as {f['user']!r}, it answers "
        f"{_pct0(f['variant'].leak_rate)} (95% CI {_ci(f['variant'].leak_ci)}) of the questions about documents "
        f"{f['user']!r} may not read above chance"
        + (
            f", while {f['safe'].label} leaks {_pct0(f['safe'].leak_rate)}: retrieval only shows what the user may read"
            if f["safe"] is not None
            else ""
        )
        + (
            "; your documents are restricted, so leaking variants are set aside."
            if f["restricted"]
            else ". If some documents are restricted, keep them out of fine-tuning data."
        )
    ),
    ReasonCode.LEAK_NOT_MEASURED: lambda f: (
        "Your documents are restricted but this run did not measure leakage: run compare as a user "
        "(--as-user NAME) to see what a fine-tuned model tells people who may not read them."
    ),
    ReasonCode.RESTRICTED_DOCUMENTS: lambda f: (
        "Some documents are restricted: RAG filters passages per user, while a model fine-tuned on them answers "
        "from its weights whoever asks; fine-tune only on what every user may read."
    ),
    ReasonCode.MULTI_PASSAGE_WEAK: lambda f: (
        f"Reading several passages is weak: {f['more'].label} {_pct(f['more'].accuracy)} vs {f['one'].label} "
        f"{_pct(f['one'].accuracy)}; a RAFT-trained reader (infuse dataset build --kind raft) targets this."
    ),
    ReasonCode.RAFT_GAIN: lambda f: (
        f"RAFT training changed multi-passage reading by {100 * (f['raft'].accuracy - f['plain'].accuracy):+.1f} "
        f"points: {f['raft'].label} {_pct(f['raft'].accuracy)} vs {f['plain'].label} {_pct(f['plain'].accuracy)}."
    ),
    ReasonCode.STYLE_NOT_MEASURED: lambda f: (
        "Whether answers follow your style is not measured by this run (it scores accuracy only), "
        "so the confidence is at most medium: read a sample of answers before deciding."
    ),
}


def reason_text(reason: Reason) -> str:
    """The English sentence for one reason."""
    return _SENTENCES[reason.code](reason.facts)


# --------------------------------------------------------------------------------------------
# Next steps


_GENERIC_STEPS = [
    "infuse questions generate --per-chunk 2      # or: infuse questions import FILE --format mc|qa|squad",
    "infuse compare --questions NAME --variants base,rag,ft,ft+rag -k 1,3,5 --adapter ADAPTER",
    "infuse advise --run RUN                       # this advice again, with the measurements",
]


def _rag_steps(qname: str, chosen: Candidate | None, cands: list[Candidate]) -> list[str]:
    steps = []
    if len({c.k for c in cands if c.approach == Approach.RAG and c.k is not None}) < 3:
        steps.append(f"infuse compare --questions {qname} --variants rag -k 1,3,5   # find the best k")
    recall = chosen.recall if chosen is not None else None
    reason = f"recall@k is {_pct(recall)}; " if recall is not None and recall < 0.95 else ""
    steps.append(
        f"{reason}try a reranker: INFUSE_SEARCH__RERANKER={_RERANKER} infuse compare "
        f"--questions {qname} --variants rag -k {chosen.k if chosen and chosen.k else 3}"
    )
    steps.append("infuse ingest DOCS --prune    # after every document change (only changed files are re-read)")
    if chosen is not None and chosen.misses_latency:
        steps.append("cut latency: fewer passages (-k 1), a smaller model, or --max-tokens")
    steps.append("infuse serve    # grounded answers with citations")
    return steps


def _fine_tune_steps(qname: str, chosen: Candidate | None, trend: tuple[Candidate, Candidate] | None) -> list[str]:
    paraphrases = 5
    if trend is not None:
        most = trend[1].dataset.paraphrases if trend[1].dataset is not None else None
        paraphrases = int(max(5, 2 * (most or 5)))
    steps = [
        f"infuse dataset build --kind paraphrase --paraphrases {paraphrases}",
        "infuse tune --dataset DATASET --method lora        # registers DATASET-lora",
        f"infuse compare --questions {qname} --variants ft,ft+rag --adapter DATASET-lora -k 3",
        f"infuse serve --adapter {chosen.adapter if chosen is not None and chosen.adapter else 'ADAPTER'}",
    ]
    if chosen is not None and chosen.training_seconds is not None:
        steps.append(f"retrain after each knowledge change (training took {_secs(chosen.training_seconds)} here)")
    return steps


def _hybrid_steps(qname: str, chosen: Candidate | None) -> list[str]:
    adapter = chosen.adapter if chosen is not None and chosen.adapter else "ADAPTER"
    return [
        "infuse dataset build --kind raft     # questions with retrieved and distractor passages (RAFT)",
        "infuse tune --dataset DATASET --method lora",
        f"infuse compare --questions {qname} --variants rag,ft+rag --adapter DATASET-lora -k 1,3,5",
        f"infuse serve --adapter {adapter}    # answers with retrieval through the adapter",
        "infuse ingest DOCS --prune    # after every document change; retrain only when the style changes",
    ]


def _none_steps(qname: str, cands: list[Candidate]) -> list[str]:
    steps = [
        f"infuse compare --questions {qname} --model STRONGER_MODEL --variants base,rag -k 3   # a stronger model",
        f"infuse questions list    # check the questions: are {qname}'s answers in your documents?",
    ]
    recalls = [c.recall for c in cands if c.recall is not None]
    if recalls and max(recalls) < 0.5:
        steps.append(
            f"retrieval found the gold passage for at most {_pct(max(recalls))} of the questions: "
            "check what was ingested (infuse status) and the questions' gold documents"
        )
    return steps


def _approach_steps(
    approach: Approach,
    criteria: Criteria,
    chosen: Candidate | None,
    cands: list[Candidate],
    qname: str,
    trend: tuple[Candidate, Candidate] | None,
) -> list[str]:
    if approach == Approach.NONE:
        return _none_steps(qname, cands)
    if approach == Approach.BASE:
        steps = [
            "infuse serve      # the base model already answers well enough; nothing to inject",
            "infuse questions generate --per-chunk 2 && infuse compare --questions NEW "
            "--variants base,rag -k 1,3   # re-check on new questions when documents change",
        ]
    elif approach == Approach.RAG:
        steps = _rag_steps(qname, chosen, cands)
    elif approach == Approach.FINE_TUNE:
        steps = _fine_tune_steps(qname, chosen, trend)
    else:
        steps = _hybrid_steps(qname, chosen)
    if criteria.needs_style and criteria.few_examples and approach in (Approach.FINE_TUNE, Approach.HYBRID):
        steps.insert(
            0, "infuse dataset build --kind qa --per-chunk 3    # more examples in your format, from the knowledge base"
        )
    return steps


def next_steps(decision: Decision) -> list[str]:
    """``infuse`` commands to run next for the decided approach (general ones without a run)."""
    if not decision.candidates:
        return _GENERIC_STEPS + _approach_steps(decision.approach, decision.criteria, None, [], "NAME", None)
    return _approach_steps(
        decision.approach,
        decision.criteria,
        decision.chosen,
        decision.candidates,
        decision.questions or "NAME",
        decision.trend,
    )


# --------------------------------------------------------------------------------------------
# The recommendation


_COMMAND = re.compile(r"(^|[\s;&:(])infuse (?=[a-z])")


def with_workspace(step: str, workspace: str | Path | None) -> str:
    """`step` with ``-w WS`` after every ``infuse`` command in it (unchanged without a workspace),
    so a printed next command runs against the workspace the user passed.

    >>> with_workspace("INFUSE_X=1 infuse compare -k 3 && infuse report", "my ws")
    "INFUSE_X=1 infuse -w 'my ws' compare -k 3 && infuse -w 'my ws' report"
    """
    if workspace is None:
        return step
    return _COMMAND.sub(lambda m: f"{m.group(1)}infuse -w {shlex.quote(str(workspace))} ", step)


def explain(decision: Decision, workspace: str | Path | None = None) -> Recommendation:
    """The decision in words: one sentence per reason (repeats dropped) and the next steps (with
    ``-w WORKSPACE`` in each command when `workspace` is given: the one the user passed)."""
    reasons = list(dict.fromkeys(reason_text(r) for r in decision.reasons))
    return Recommendation(
        approach=decision.approach,
        confidence=decision.confidence,
        reasons=reasons,
        next_steps=[with_workspace(step, workspace) for step in next_steps(decision)],
        evidence=decision.evidence,
        decision=decision,
    )


def format_recommendation(rec: Recommendation, width: int = 100) -> str:
    """The recommendation as plain text for a terminal."""
    lines = [f"Recommendation: {rec.approach} (confidence: {rec.confidence})", "", "Why:"]
    for reason in rec.reasons:
        lines += textwrap.wrap(reason, width=width, initial_indent="  - ", subsequent_indent="    ")
    lines += ["", "Next:"]
    for step in rec.next_steps:
        lines.append(f"  $ {step}" if re.match(r"(\w+=\S+\s+)*infuse ", step) else f"  - {step}")
    return "\n".join(lines)
