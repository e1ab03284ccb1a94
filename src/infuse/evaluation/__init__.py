"""Evaluation: question sets, scoring, the compare runner, reports and the advisor."""
