"""Find a checkpoint (local folder or hub id), read its config and safetensors, build the model.

No ``trust_remote_code``: the architecture is recognised from ``config.json``'s ``model_type`` and the
weights are mapped by name onto ``DiffusionLM``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from sparsed.config_errors import ConfigError
from sparsed.models.registry import FAMILIES, Family
from sparsed.models.transformer import DiffusionLM, ModelArgs

ARCHITECTURES: dict[str, Family] = FAMILIES
DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32,
          "fp16": torch.float16, "float16": torch.float16}
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device={device} but no CUDA device is visible; use model.device=cpu or auto")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"model.dtype={dtype!r} is not allowed; choose one of: auto, bf16, fp32, fp16")
    return DTYPES[dtype]


def looks_like_hub_id(path: str) -> bool:
    return path.count("/") == 1 and not path.startswith((".", "/", "~")) and not os.path.exists(path)


def resolve_checkpoint(path: str) -> Path:
    """A local folder holding config.json; hub ids are downloaded (safetensors only) when online."""
    p = Path(os.path.expanduser(path))
    if not p.is_absolute() and not p.exists() and (PACKAGE_ROOT / p).is_dir():
        p = PACKAGE_ROOT / p  # a path inside the repository (the shipped model) from any working directory
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError(f"model.path={path}: the folder has no config.json")
        return p
    if not looks_like_hub_id(path):
        raise ConfigError(f"model.path={path}: no such checkpoint folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=path, allow_patterns=HUB_FILES))
    except Exception as exc:  # noqa: BLE001 - offline, gated, missing: one clear message
        raise ConfigError(
            f"model.path={path}: could not fetch this hub id ({type(exc).__name__}: {_sentences(str(exc), 300)}). "
            "Offline? Download the checkpoint elsewhere and point at its folder: model.path=/path/to/checkpoint"
        ) from exc


def _sentences(text: str, limit: int) -> str:
    """The whole sentences of ``text`` that fit in ``limit`` characters (at least the first)."""
    words = " ".join(text.split())
    cut = words.rfind(". ", 0, limit)
    return words if len(words) <= limit else words[: cut + 1] if cut > 0 else words.split(". ")[0] + "."


def read_config(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / "config.json").read_text())


def architecture_of(cfg: dict[str, Any]) -> str:
    mt = str(cfg.get("model_type", "")).lower()
    for name, fam in ARCHITECTURES.items():
        if mt in fam.model_types:
            return name
    known = ", ".join(t for m in ARCHITECTURES.values() for t in m.model_types)
    raise ConfigError(f"config.json model_type={cfg.get('model_type')!r} is not a supported architecture ({known})")


def args_for(ckpt: Path, expect_arch: str | None = None) -> ModelArgs:
    cfg = read_config(ckpt)
    arch = architecture_of(cfg)
    if expect_arch and arch != expect_arch:
        raise ConfigError(
            f"model.arch={expect_arch} but the checkpoint at {ckpt} is a {arch} model (config.json "
            f"model_type={cfg.get('model_type')!r}); pick model={arch} or another model.path"
        )
    return ARCHITECTURES[arch].args_from_config(cfg)


def safetensors_files(ckpt: Path) -> list[Path]:
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [ckpt / s for s in shards]
    single = ckpt / "model.safetensors"
    if single.is_file():
        return [single]
    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"model.path={ckpt}: no safetensors weights found (only safetensors are supported)")
    return files


def load_model(
    path: str, device: str = "auto", dtype: str = "auto", expect_arch: str | None = None
) -> DiffusionLM:
    ckpt = resolve_checkpoint(path)
    args = args_for(ckpt, expect_arch)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    mapper = ARCHITECTURES[args.arch].map_name
    with torch.device("meta"):
        model = DiffusionLM(args)
    expected = set(model.state_dict())
    state: dict[str, torch.Tensor] = {}
    for f in safetensors_files(ckpt):
        with safe_open(str(f), framework="pt", device="cpu") as sf:
            for name in sf.keys():
                internal = mapper(name)
                if internal is None:
                    continue  # e.g. rotary buffers some exports carry
                state[internal] = sf.get_tensor(name).to(device=dev, dtype=dt)
    missing = expected - set(state)
    if missing:
        raise ConfigError(f"model.path={ckpt}: checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def random_model(args: ModelArgs, device: str = "auto", dtype: str = "auto", seed: int = 0) -> DiffusionLM:
    """Random weights built directly on the target device and dtype (an 8B model in seconds on a GPU)."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dt)
    try:
        with torch.device(dev):
            model = DiffusionLM(args)
    finally:
        torch.set_default_dtype(previous)
    return model.init_random(seed).eval().requires_grad_(False)


def save_checkpoint(model: DiffusionLM, folder: str | Path, extra_config: dict | None = None) -> Path:
    """Write ``model`` in its family's checkpoint layout (config.json + model.safetensors)."""
    from safetensors.torch import save_file

    family = ARCHITECTURES[model.args.arch]
    if family.config_from_args is None or family.checkpoint_name is None:
        raise ValueError(f"the {family.name} family has no checkpoint writer")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = family.config_from_args(model.args) | (extra_config or {})
    tensors = {family.checkpoint_name(k): v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = folder / "model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return folder


def save_llada_checkpoint(model: DiffusionLM, folder: str | Path, extra_config: dict | None = None) -> Path:
    """Write ``model`` (a LLaDA-architecture model) as a LLaDA-layout checkpoint."""
    if model.args.arch != "llada":
        raise ValueError(f"save_llada_checkpoint got a {model.args.arch} model; use save_checkpoint")
    return save_checkpoint(model, folder, extra_config)
