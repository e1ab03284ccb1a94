"""Turning files into documents and documents into chunks."""

from infuse.documents.chunking import Chunker
from infuse.documents.loaders import LoadResult, discover_files, load_file
from infuse.documents.models import Chunk, Document, FileType, Section

__all__ = ["Chunk", "Chunker", "Document", "FileType", "LoadResult", "Section", "discover_files", "load_file"]
