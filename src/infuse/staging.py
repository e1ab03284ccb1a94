"""Folders that appear complete or not at all: write into a staging sibling, then rename.

>>> with staged_folder(root / "my-dataset") as staging:     # doctest: +SKIP
...     (staging / "train.jsonl").write_text(rows)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; when the block succeeds it replaces
    `target` (an existing one is removed first), when it fails it is deleted. A crash or kill
    leaves at most a ``.NAME.tmp-PID`` folder, never a half-written `target`."""
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
