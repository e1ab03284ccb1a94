"""Bringing files into a knowledge store: load, chunk, screen, tokenise, embed, commit in batches."""
