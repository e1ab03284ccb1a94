"""What every route shares, and the one place a caller's identity becomes what they may see.

Why one object: the model is loaded once and shared, but the pipeline is built per request from
the caller (:meth:`ServerContext.pipeline_for`: the workspace's retriever narrowed by
:func:`infuse.store.filters.access_filter`), so chat completions, streaming citations, search,
document and status views all filter the same way, below the model and before ranking.

Fine-tuned weights are the exception no filter can reach: what a run learnt from its training
documents is in the weights, for every caller. :class:`TunedWeights` records which access lists
those documents carried (from the runs' manifests); :meth:`ServerContext.check_weights` refuses
the model (403) to a caller who may not read all of them, unless the admin allowed it
(``serve --allow-tuned-for-all`` / ``[server] allow_tuned_for_all``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from infuse.access import Caller, DefaultPolicy
from infuse.rag import RagPipeline
from infuse.server.auth import Gate
from infuse.server.common import APIError
from infuse.server.conversations import ConversationStore
from infuse.server.queue import ModelQueue
from infuse.store.filters import Filter, FilterLike, access_filter, combine, validate
from infuse.workspace import Workspace, WorkspaceRetriever


@dataclass(frozen=True)
class TunedWeights:
    """The fine-tuning runs in the served model and the access lists of their training documents
    (``access`` None: a run recorded none, e.g. one trained before access lists existed)."""

    runs: tuple[str, ...]
    access: tuple[tuple[str, ...], ...] | None

    @classmethod
    def from_runs(cls, runs: Sequence[dict[str, Any]]) -> TunedWeights | None:
        """From ``infuse.tuning.registry.training_access`` entries (``{"run", "access"}``); None: no runs."""
        if not runs:
            return None
        columns: set[tuple[str, ...]] = set()
        for run in runs:
            if run.get("access") is None:
                return cls(tuple(r["run"] for r in runs), None)
            columns.update(tuple(c) for c in run["access"])
        return cls(tuple(r["run"] for r in runs), tuple(sorted(columns)))

    def readable_by(self, caller: Caller, policy: DefaultPolicy) -> bool:
        if caller.admin:
            return True
        return self.access is not None and all(caller.may_read(column, policy) for column in self.access)


@dataclass
class ServerContext:
    pipeline: RagPipeline  # the base pipeline (its filters apply to everyone); per caller: pipeline_for
    queue: ModelQueue
    gate: Gate
    policy: DefaultPolicy = DefaultPolicy.ADMINS
    tuned: TunedWeights | None = None
    allow_tuned_for_all: bool = False
    conversations: ConversationStore | None = None  # each user's chat history (the web UI); None: not kept
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> Any:
        return self.pipeline.model

    @property
    def retriever(self) -> WorkspaceRetriever | None:
        retriever = getattr(self.pipeline, "retriever", None)
        return retriever if isinstance(retriever, WorkspaceRetriever) else None

    @property
    def workspace(self) -> Workspace | None:
        retriever = self.retriever
        return retriever.workspace if retriever is not None else None

    def visible(self, caller: Caller) -> Filter | None:
        """What ``caller`` may see: the base pipeline's filters and the caller's access."""
        base = self.retriever.filters if self.retriever is not None else None
        return combine(base, access_filter(caller, self.policy))

    def request_filters(self, caller: Caller, filters: FilterLike) -> Filter | None:
        """A client's own ``filters`` checked against the metadata keys of the documents ``caller``
        may read (not the whole knowledge base's: an error listing keys, or suggesting one, must
        not reveal a restricted document's metadata)."""
        workspace = self.workspace
        if filters is None or workspace is None:
            return None
        if caller.admin:
            return workspace.validate_filters(filters)

        def visible_keys() -> frozenset[str]:
            return frozenset(key for d in workspace.documents(self.visible(caller)) for key in d.metadata)

        return validate(filters, visible_keys)

    def pipeline_for(self, caller: Caller) -> RagPipeline:
        """The caller's pipeline: the shared model over a retriever that sees only what they may read."""
        retriever = self.retriever
        if caller.admin or retriever is None:
            # An admin reads everything; a stand-in pipeline without a workspace serves a single user.
            return self.pipeline
        workspace = retriever.workspace
        return workspace.rag_pipeline(
            self.pipeline.model, self.pipeline.generation, filters=self.visible(caller), mode=retriever.mode
        )

    def check_weights(self, caller: Caller) -> None:
        """403 when the served weights were fine-tuned on documents ``caller`` may not read."""
        tuned = self.tuned
        if tuned is None or self.allow_tuned_for_all or tuned.readable_by(caller, self.policy):
            return
        runs = ", ".join(tuned.runs)
        why = (
            "its training documents' access lists were not recorded"
            if tuned.access is None
            else "some of its training documents are not readable by you"
        )
        raise APIError(
            403,
            f"the served model was fine-tuned (run {runs}) and {why}: knowledge baked into weights cannot be "
            "filtered per user, so this server does not answer you with them. Use /v1/search, or ask an admin "
            "to serve a model trained only on documents you may read (or to start the server with "
            "--allow-tuned-for-all).",
            "tuned_weights_restricted",
            "model",
            kind="permission_error",
        )
