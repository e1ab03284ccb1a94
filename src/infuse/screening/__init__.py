"""Screening passages for prompt injection (rules in English and Japanese)."""
