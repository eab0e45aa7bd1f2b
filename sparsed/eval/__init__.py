"""Evaluation: benchmark metrics and scoring helpers."""
