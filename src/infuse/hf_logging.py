"""Silence Hugging Face's own progress bars: infuse shows its own, and theirs interleave with it."""

from __future__ import annotations


def quiet_hf_progress() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
