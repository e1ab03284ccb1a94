"""``python -m infuse``: the CLI, also for launchers that take a module (``torchrun -m infuse``)."""

from infuse.cli import app

app()
