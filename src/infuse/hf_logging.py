"""Keep the libraries' own chatter off the user's terminal: infuse reports its own progress and
errors, and the libraries' bars and warnings interleave with them and read like failures.

* :func:`quiet_hf_progress`: Hugging Face's progress bars off (called where models load, so library
  users get it too);
* :func:`quiet_library_output`: what the CLI does at start unless ``-v/--verbose`` is given:
  transformers and Hugging Face Hub log only errors ("Some weights were not initialized" is a
  warning), their tqdm bars and those of ``datasets`` are off, and Python warnings
  (``DeprecationWarning``, ``FutureWarning``, ``UserWarning`` from any library) go to a log file
  instead of stderr (the CLI names ``WS/logs/warnings.log`` once a command has opened a workspace).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

# Read by the libraries when they start (or on each bar): set before they are imported.
QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_VERBOSITY": "error",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",  # its fork warning
}
WARNINGS_LOGGER = "py.warnings"


def quiet_hf_progress() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers


class _LazyFileHandler(logging.Handler):
    """Appends records to the file `where()` names at the time of the record (None: drop it), so
    warnings go to the workspace's log once the command has opened one, and nowhere before."""

    def __init__(self, where: Callable[[], Path | None]) -> None:
        super().__init__(logging.WARNING)
        self.where = where
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        path = self.where()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(self.format(record) + "\n")
        except OSError:
            pass  # a log that cannot be written must not fail the command


def quiet_library_output(log_file: Callable[[], Path | None] = lambda: None) -> None:
    """Silence the libraries for this process: their verbosity and bars through the environment
    (and directly for those already imported), Python warnings to `log_file()` (None: dropped)."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if "transformers" in sys.modules:  # imported already: the environment is read too late
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    logging.captureWarnings(True)
    logger = logging.getLogger(WARNINGS_LOGGER)
    logger.handlers = [_LazyFileHandler(log_file)]
    logger.propagate = False  # not to the root logger, whose last-resort handler prints to stderr


__all__ = ["QUIET_ENVIRONMENT", "quiet_hf_progress", "quiet_library_output"]
