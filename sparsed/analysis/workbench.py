"""What every analysis notebook starts from: a run config composed from Hydra overrides (the same
``configs/`` a ``run.py`` call uses), the model and tokenizer it names, prompts and sampler settings.

    bench = load_bench(["model=small"])                     # the shipped small model
    bench = load_bench(["model=llada", "model.path=/ckpt/LLaDA-1.5", "model.device=cuda"])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from sparsed.models.transformer import DiffusionLM

ROOT = Path(__file__).resolve().parents[2]


def compose_run(overrides: list[str]) -> DictConfig:
    """The run config ``python run.py <overrides>`` would get (validated by the caller)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sparsed.config import register_schemas

    register_schemas()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@dataclass
class Bench:
    cfg: DictConfig
    model: DiffusionLM
    tokenizer: Any

    @property
    def name(self) -> str:
        return f"{self.cfg.model.name} ({self.model.args.arch}, {self.model.dtype}, {self.model.device.type})"

    def gen(self, steps: int, gen_length: int) -> DictConfig:
        """The model's sampler settings with ``steps`` steps over ``gen_length`` tokens in one block (Table 3)."""
        gen = OmegaConf.create(OmegaConf.to_container(self.cfg.gen, resolve=True))
        gen.steps, gen.gen_length = steps, gen_length
        if gen.block_length is not None:
            gen.block_length = gen_length
        return gen

    def ruler(self, task: str, length: int, n: int, gen_length: int, seed: int = 0, fill: str = "official") -> list[dict]:
        """``n`` RULER samples (evaluation seeds), each with its token ids under ``ids`` ([1, P] tensor)."""
        from sparsed.data.ruler import generate, sample_ids

        samples = generate(task, length, self.tokenizer, n=n, seed=seed, gen_length=gen_length, use_cache=False,
                           fill=fill)
        for s in samples:
            s["ids"] = torch.tensor([sample_ids(self.tokenizer, s)], device=self.model.device)
        return samples

    def score(self, sample: dict, tokens: list[int]) -> float:
        """RULER's metric for one generated answer (0-100)."""
        from sparsed.eval.ruler_metrics import score

        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return float(score(sample["metric"], [text], [sample["outputs"]]))


def load_bench(overrides: list[str]) -> Bench:
    from sparsed.build import build_model, check_checkpoint, load_run_tokenizer
    from sparsed.config import validate

    cfg = compose_run(overrides)
    validate(cfg)
    check_checkpoint(cfg)
    tokenizer = load_run_tokenizer(cfg)
    model = build_model(cfg, tokenizer)
    model.eval()
    return Bench(cfg, model, tokenizer)


def record_generation(bench: Bench, ids: torch.Tensor, gen: DictConfig, settings: Any, path: Path,  # noqa: ANN401
                      method: Any = None) -> tuple[Any, list[int]]:  # noqa: ANN401
    """Generate under ``method`` (dense by default) with the attention recorder on; the record is written to
    ``path`` and read back. Returns (``record_file.AttentionRecord``, generated token ids)."""
    from sparsed.analysis.record_file import AttentionRecord
    from sparsed.analysis.recorder import AttentionRecorder
    from sparsed.attention import build_method
    from sparsed.sampling.dispatch import sample

    inner = method if method is not None else build_method("dense", {}, facts=bench.model.args.facts)
    recorder = AttentionRecorder(inner, settings)
    out = sample(bench.model, ids, gen, recorder)
    recorder.save(path)
    return AttentionRecord.load(path), out.generated[0].tolist()
