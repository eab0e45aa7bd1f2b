"""Shared test fixtures: the golden checkpoints in ../shared/fixtures (computed by the original code)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("SPARSED_FIXTURES", ROOT.parent / "shared" / "fixtures"))

os.environ.setdefault("SPARSED_WANDB", "false")  # tests never track (run.wandb's default reads it)
warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def fixture_dir(name: str) -> Path:
    path = FIXTURES / name
    if not (path / "expected.safetensors").is_file():
        pytest.skip(f"golden fixtures not found at {path} (set SPARSED_FIXTURES)")
    return path


@pytest.fixture(scope="session")
def llada_tiny():
    from safetensors.torch import load_file

    from sparsed.models.loading import load_model

    path = fixture_dir("llada-tiny")
    return load_model(str(path), device="cpu", dtype="fp32"), load_file(str(path / "expected.safetensors"))


@pytest.fixture(scope="session")
def dream_tiny():
    from safetensors.torch import load_file

    from sparsed.models.loading import load_model

    path = fixture_dir("dream-tiny")
    return load_model(str(path), device="cpu", dtype="fp32"), load_file(str(path / "expected.safetensors"))
