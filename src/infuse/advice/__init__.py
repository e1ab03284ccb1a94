"""The advisor: which approach to use (base model, RAG, fine-tuning or both), why, and what to try next.

:func:`advise` combines the decision criteria a team states (:class:`Criteria`) with the
measurements of a compare run (its typed summary, :class:`~infuse.evaluation.runs.CompareSummary`)
and returns a :class:`Recommendation`: the approach, a confidence, the reasons (quoting the run's
numbers) and concrete ``infuse`` commands to run next.

It is two steps, kept apart so the rules can be read and tested without the prose:
:func:`~infuse.advice.decide.decide` (pure, typed: a :class:`~infuse.advice.decide.Decision` whose
reasons are codes and numbers) and :func:`~infuse.advice.explain.explain` (the English sentences
and the next commands).

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

0. Every variant is checked against chance (the run's expected accuracy of guessing: 1/options
   for multiple choice, 0 for open questions) and an absolute floor: it *answers* only when its
   accuracy is at least ``max(ABSOLUTE_FLOOR, chance + CHANCE_MARGIN)`` (10%; 30% for four
   options) and its 95% interval lies above chance. Variants that do not are set aside (said in
   the reasons). When none answers, the advice is **none of these** ("try a stronger model or
   check the questions"), never "the base model already answers well enough".
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
   measured, and a clearly better variant the criteria ruled out. A rule that is not measured
   never gives "high": a run scores accuracy, not style, so ``needs_style`` caps it at medium.
   A chosen variant whose interval reaches below the floor lowers it too (it barely answers).
   Noisy timings (the run's ``timing`` says so: repeats that differ, or a load above the cores)
   add a caveat, and lower the confidence when a latency budget was weighed.

>>> rec = advise(Criteria(updates=UpdateFrequency.DAILY))
>>> rec.approach, rec.confidence
(<Approach.RAG: 'rag'>, 'medium')
"""

from __future__ import annotations

from pathlib import Path

from infuse.advice.decide import Approach, Criteria, Decision, Reason, ReasonCode, UpdateFrequency, decide
from infuse.advice.explain import Recommendation, explain, format_recommendation
from infuse.evaluation.runs import CompareSummary

__all__ = [
    "Approach",
    "UpdateFrequency",
    "Criteria",
    "Recommendation",
    "Decision",
    "Reason",
    "ReasonCode",
    "advise",
    "decide",
    "explain",
    "format_recommendation",
]


def advise(
    criteria: Criteria, summary: CompareSummary | None = None, workspace: str | Path | None = None
) -> Recommendation:
    """Recommend an approach from the criteria and, when given, a compare run's summary; the next
    commands carry ``-w WORKSPACE`` when `workspace` (the one the user passed) is given."""
    return explain(decide(criteria, summary), workspace)
