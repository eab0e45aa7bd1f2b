"""Evaluation data: the in-repo RULER generator (``sparsed.data.ruler``) and runner prompts."""
