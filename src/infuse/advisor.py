"""The advisor under its first name: ``infuse.advisor`` is :mod:`infuse.advice` (decide + explain).

Kept so that code importing ``infuse.advisor`` keeps working; new code imports :mod:`infuse.advice`.
"""

from __future__ import annotations

from infuse.advice import (
    Approach,
    Criteria,
    Decision,
    Reason,
    ReasonCode,
    Recommendation,
    UpdateFrequency,
    advise,
    decide,
    explain,
    format_recommendation,
)

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
