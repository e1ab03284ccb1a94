"""``python -m infuse.cli``: the same CLI as ``infuse`` and ``python -m infuse``."""

from infuse.cli import app

app()
