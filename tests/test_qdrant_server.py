"""The KnowledgeStore contract against a real Qdrant server, when one is given.

Set ``INFUSE_QDRANT_URL`` (and ``QDRANT_API_KEY`` if the server wants one), e.g. with the docker
compose file of docs/deploy.md: ``INFUSE_QDRANT_URL=http://127.0.0.1:6333 make test``. No Qdrant
server can be installed on the project's development machines (no package ships one), so there
these tests are skipped with that reason; tests/test_qdrant_store.py (local mode) and
tests/test_qdrant_parity.py (the engine in-process) run everywhere. Every test uses collections of
its own (``infuse_test_<random>_*``) and deletes them afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("qdrant_client")

from infuse.config import QdrantSettings  # noqa: E402
from infuse.store.qdrant import QdrantStore, connect  # noqa: E402
from store_contract import MakeStore, StoreContract  # noqa: E402

URL = os.environ.get("INFUSE_QDRANT_URL")

pytestmark = pytest.mark.skipif(
    not URL, reason="INFUSE_QDRANT_URL is not set: no Qdrant server to test against (see docs/qdrant.md)"
)


class TestQdrantServerStore(StoreContract):
    PINNED_SNAPSHOTS = False  # Qdrant has no point-in-time reads (docs/qdrant.md)

    @pytest.fixture
    def make_store(self) -> Iterator[MakeStore]:
        settings = QdrantSettings(url=URL, collection=f"infuse_test_{uuid.uuid4().hex[:12]}", exact=True)
        yield lambda dimension: QdrantStore(settings, "chunks", dimension)
        client = connect(settings, None)
        for collection in client.get_collections().collections:
            if collection.name.startswith(settings.collection):
                client.delete_collection(collection.name)
