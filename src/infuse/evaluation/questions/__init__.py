"""Evaluation question sets: import them from files, generate them from knowledge-base chunks, keep
them in the workspace.

Two kinds of question (:class:`QuestionKind`):

* multiple choice (``mc``): a question, its choices (usually 4) and the right choice's index,
  scored by the log-likelihood of each choice;
* short answer (``short``): a question and the answers accepted for it, scored by exact match / F1.

A question set is a folder ``WS/questions/NAME/`` with ``questions.jsonl`` (one
:meth:`Question.to_dict` per line) and ``manifest.json`` (format, source files, counts by kind and
language, skipped rows with their reasons, generator model and seed).

Importers (:class:`ImportFormat`): ``mc`` and ``qa`` (plain JSONL, including the files
``infuse lab world`` writes), ``squad`` (SQuAD 2.0 JSON), ``jaquad`` (JaQuAD: SQuAD 1.1 JSON, a
file or a folder of them) and ``realtimeqa`` (``YYYYMMDD_qa.jsonl``). A bad row is skipped and
listed in the manifest with its line (or JSON path) and the reason; only a file with no usable row
at all is an error.

>>> from infuse import Workspace                                                       # doctest: +SKIP
>>> ws = Workspace.open("kb")                                                          # doctest: +SKIP
>>> qset = import_questions(Path("dev-v2.0.json"), ImportFormat.SQUAD, limit=500)     # doctest: +SKIP
>>> qset.manifest["counts"]                                                            # doctest: +SKIP
{'questions': 500, 'by_kind': {'short': 500}, 'by_lang': {'en': 500}, 'with_gold_doc': 500, 'updates': 0, 'skipped': 0, ...}
>>> save_question_set(ws.questions_dir, qset)                                          # doctest: +SKIP
>>> load_question_set(ws.questions_dir, "dev-v2.0").questions[0].answers              # doctest: +SKIP
('France',)

RealTimeQA questions come with the news articles a web search returned for them; write those as
plain documents and ingest them before asking (the CLI: ``infuse questions import FILE --format
realtimeqa --documents news/``; the fields of every format: docs/evaluation.md):

>>> realtimeqa_documents(Path("20250801_qa.jsonl"), Path("news/"))   # then `infuse ingest news/`  # doctest: +SKIP

Generated sets (Ovadia et al., 2023: 4-option questions written per chunk, the most specific kept):

>>> chunks = list(ws.knowledge_snapshot().iter_chunks())                               # doctest: +SKIP
>>> qset = generate_questions(chunks, model, per_chunk=2, seed=0)                      # doctest: +SKIP
"""

from __future__ import annotations

# Each module declares its public names (``__all__``); the package offers them all.
from infuse.evaluation.questions import generating, importing, model
from infuse.evaluation.questions.generating import *  # noqa: F403
from infuse.evaluation.questions.importing import *  # noqa: F403
from infuse.evaluation.questions.model import *  # noqa: F403

__all__ = [*model.__all__, *importing.__all__, *generating.__all__]
