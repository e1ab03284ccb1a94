"""Fine-tuning: training sets from the knowledge base, LoRA / QLoRA / full fine-tuning, a run registry.

See :mod:`infuse.tuning.builders` (datasets), :mod:`infuse.tuning.trainer` (the loop) and
:mod:`infuse.tuning.registry` (runs by name, merge).
"""
