"""infuse's OpenAI-compatible HTTP server (FastAPI)."""

from infuse.server.app import RAG_MODEL_ID, create_app, make_server, serve

__all__ = ["RAG_MODEL_ID", "create_app", "make_server", "serve"]
