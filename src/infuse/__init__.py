"""infuse: measure RAG against fine-tuning on your own documents, locally."""

import os
import warnings

# LanceDB's Rust core logs deprecation notices at WARN level on every query; users of a CLI do
# not need them. An explicit LANCE_LOG setting still wins.
os.environ.setdefault("LANCE_LOG", "error")
# PEFT (0.21) reads a transformers 5 property that warns it is deprecated, on every adapter load.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

from infuse.workspace import Workspace  # noqa: E402

__all__ = ["Workspace"]
__version__ = "0.1.0"
