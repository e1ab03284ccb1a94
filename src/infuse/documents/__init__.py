"""Turning files into documents and documents into chunks."""

from infuse.documents.chunking import Chunker
from infuse.documents.discovery import discover, discover_files
from infuse.documents.loaders import LoadResult, load_file
from infuse.documents.models import Chunk, Document, FileType, Section

__all__ = [
    "Chunk",
    "Chunker",
    "Document",
    "FileType",
    "LoadResult",
    "Section",
    "discover",
    "discover_files",
    "load_file",
]
