"""infuse's HTTP server (FastAPI): OpenAI-compatible routes, search, documents, admin, health."""

from infuse.server.app import RAG_MODEL_ID, create_app, make_server, serve

__all__ = ["RAG_MODEL_ID", "create_app", "make_server", "serve"]
