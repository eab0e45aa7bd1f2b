"""sparsed: sparse attention for diffusion language models (SparseD and its baselines)."""

__version__ = "0.1.0"
