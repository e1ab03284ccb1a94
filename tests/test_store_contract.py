"""Every knowledge store passes the same contract (tests/store_contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infuse.store.lancedb import LanceDBStore
from infuse.store.memory import InMemoryStore
from store_contract import MakeStore, StoreContract


class TestLanceDBStore(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        return lambda dimension: LanceDBStore(tmp_path / "lancedb", "chunks", dimension)


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return InMemoryStore
