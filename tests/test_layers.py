"""The import layers: each package imports only from its own layer or the layers below.

documents -> (models, embedders, store, screening) -> retrieval -> ingest -> rag -> workspace ->
tuning -> evaluation/advice -> lab -> the front ends (cli, server, demo). Every ``import``
statement counts, also those under ``TYPE_CHECKING`` and inside functions: a type-level cycle is
still a cycle for the reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import infuse

SRC = Path(infuse.__file__).parent

LAYERS: list[set[str]] = [
    {"language", "errors", "config", "devices", "hf_logging", "files", "progress", "jobs", "schedules", "staging"},
    {"documents", "access"},
    {"models", "embedders", "store", "identity", "screening"},
    {"retrieval"},
    {"ingest"},
    {"rag"},
    {"workspace"},
    {"tuning"},
    {"evaluation", "advice"},
    {"lab"},
    {"cli", "server", "demo", "testing", "__main__", "__init__"},
]


def layer_of(module: str) -> int:
    """The layer of ``infuse.X...`` (its top-level package or module name)."""
    top = module.split(".")[1] if module.count(".") else "__init__"
    for number, names in enumerate(LAYERS):
        if top in names:
            return number
    raise AssertionError(f"{module}: package {top!r} is in no layer; add it to LAYERS in tests/test_layers.py")


def imported_modules(source: str, module: str) -> Iterator[str]:
    """The infuse modules a module's source imports (absolute and relative imports)."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                yield f"{base}.{node.module}" if node.module else base
            elif node.module:
                yield node.module


def violations(sources: Mapping[str, str]) -> list[str]:
    """``module -> source`` in, one line per import that reaches up a layer."""
    found = []
    for module, source in sorted(sources.items()):
        own = layer_of(module)
        for target in imported_modules(source, module):
            if target.split(".")[0] != "infuse" or target == "infuse":
                continue
            if layer_of(target) > own:
                found.append(f"{module} (layer {own}) imports {target} (layer {layer_of(target)})")
    return found


def package_sources() -> dict[str, str]:
    sources = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module == "infuse":
            module = "infuse.__init__"
        sources[module] = path.read_text(encoding="utf-8")
    return sources


def test_no_module_imports_from_a_higher_layer() -> None:
    assert violations(package_sources()) == []


def test_a_backwards_import_is_caught() -> None:
    """The check itself can fail: a store that imports the RAG pipeline (even only for typing)."""
    backwards = {
        "infuse.store.base": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from infuse.rag import RagPipeline\n",
        "infuse.documents.models": "def f():\n    import infuse.workspace\n",
        "infuse.rag.pipeline": "from infuse.store.base import KnowledgeStore\n",  # downwards: allowed
    }
    assert violations(backwards) == [
        "infuse.documents.models (layer 1) imports infuse.workspace (layer 6)",
        "infuse.store.base (layer 2) imports infuse.rag (layer 5)",
    ]


def test_every_package_has_a_layer() -> None:
    for module in package_sources():
        layer_of(module)
