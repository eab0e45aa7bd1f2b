"""The training loop of the project's small diffusion LMs (CLI: scripts/train_small_dlm.py).

Two objectives: ``masked`` trains the LLaDA architecture with LLaDA's SFT loss (``loss``); ``block``
trains the SDAR architecture (Qwen3 layout, q/k norm, GQA) with SDAR's block-diffusion objective
(``block_loss``: block-causal attention over ``[x_t ; x_0]``) and exports an SDAR-layout checkpoint.

AdamW with linear warmup and cosine decay, gradient clipping, bf16 autocast on CUDA (fp32 master
weights), optional ``torch.compile`` of the transformer body, batches from ``sparsed.training.data``
built by DataLoader workers. A run lives in one folder:

    train_state.pt     resumable state (model, optimizer, step, RNG), written atomically
    model/             inference checkpoint (bf16, LLaDA or SDAR layout) + tokenizer files, loadable by load_model
    log.jsonl          one line per logged step: step, loss, lr, tokens/s, elapsed, ...
    train_config.json  the settings and the model size
    loss.png           the loss curve (when matplotlib is installed)

The batch and the mask noise of step s depend only on (seed, s), and the state is saved after whole
steps, so a resumed run continues exactly where the saved one stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparsed.models.loading import resolve_device
from sparsed.models.transformer import DiffusionLM, ModelArgs
from sparsed.tokenizer import load_tokenizer, project_tokenizer_path
from sparsed.training import checkpoint as ckpt
from sparsed.training.block_loss import block_diffusion_loss
from sparsed.training.data import Batch, DataConfig, StepDataset
from sparsed.training.loss import mask_answers, sft_loss
from sparsed.training.warm_start import warm_start_state

log = logging.getLogger("sparsed")

# Model sizes. "small" is the shipped model: 9.70M parameters (19.4 MB as bf16 safetensors), under the
# 20 MB budget. d_model 256 rather than 384+: with a 4096-token vocabulary and untied embedding/head,
# d=384 leaves room for only ~4 layers, and depth matters more for retrieval and variable tracking.
# ffn 896 = 3.5x d (SwiGLU: three matrices, so ~5x a GELU MLP's parameters).
PRESETS: dict[str, dict[str, int]] = {
    "small": {"dim": 256, "n_layers": 8, "n_heads": 8, "ffn_dim": 896},
    "tiny": {"dim": 64, "n_layers": 2, "n_heads": 4, "ffn_dim": 128},  # smoke tests
}
OBJECTIVES = ("masked", "block")


@dataclass
class TrainConfig:
    out: Path
    steps: int = 20_000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 500
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    mask_eps: float = 1e-3
    pretrain_frac: float = 0.5  # rows trained with LLaDA's pretraining objective (prompt masked too)
    objective: str = "masked"  # masked (LLaDA architecture and SFT loss) | block (SDAR architecture and objective)
    block_size: int = 4  # block of the block-diffusion objective (SDAR's training block_size)
    # More blocks: step s trains with block_sizes[s % n], so one model serves several inference blocks
    # (LoSA runs its models at 16, SDAR ships 4). Empty: block_size only.
    block_sizes: tuple[int, ...] = ()
    seed: int = 0
    preset: str = "small"
    model: dict[str, int] = field(default_factory=dict)  # overrides of the preset (dim, n_layers, ...)
    rope_theta: float = 10_000.0
    tokenizer: str | None = None  # folder; None: the project tokenizer
    data: DataConfig = field(default_factory=DataConfig)
    device: str = "auto"
    compile: bool = False
    workers: int = 4
    max_minutes: float | None = None  # stop (after saving) once this invocation has run this long
    stop_after: int | None = None  # stop (after saving) after this many steps of this invocation
    save_every: int = 500
    export_every: int = 1000
    log_every: int = 10
    resume: bool = False
    init_from: str | None = None  # a LLaDA-layout checkpoint to start from (e.g. the shipped small model)
    init_layers: tuple[int, ...] = ()  # source layer of each run layer (warm start; empty: evenly spaced)
    progress: bool = True


def block_at(cfg: TrainConfig, step: int) -> int:
    """The block-diffusion block of training step ``step`` (round-robin over ``block_sizes``; a function of
    the step only, so a resumed run trains the same blocks)."""
    return cfg.block_sizes[step % len(cfg.block_sizes)] if cfg.block_sizes else cfg.block_size


def model_args(cfg: TrainConfig, tokenizer: Any) -> ModelArgs:  # noqa: ANN401
    if cfg.preset not in PRESETS:
        raise ValueError(f"preset={cfg.preset!r}; choose one of {sorted(PRESETS)}")
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective={cfg.objective!r}; choose one of {OBJECTIVES}")
    if cfg.block_size < 1 or any(b < 1 for b in cfg.block_sizes):
        raise ValueError(f"block_size={cfg.block_size}, block_sizes={cfg.block_sizes}: every block must be >= 1")
    size = PRESETS[cfg.preset] | cfg.model
    mask = tokenizer.convert_tokens_to_ids("<|mdm_mask|>")
    if mask is None or mask == tokenizer.unk_token_id:
        raise ValueError("the tokenizer has no <|mdm_mask|> token")
    common = dict(
        vocab_size=len(tokenizer), dim=size["dim"], n_layers=size["n_layers"], n_heads=size["n_heads"],
        n_kv_heads=size.get("n_kv_heads", size["n_heads"]), ffn_dim=size["ffn_dim"], rope_theta=cfg.rope_theta,
        qkv_bias=False, mask_token_id=int(mask), eos_token_id=int(tokenizer.eos_token_id),
        pad_token_id=int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id),
    )
    if cfg.objective == "block":  # SDAR's architecture (its config.json values where a size does not decide)
        return ModelArgs(arch="sdar", norm_eps=1e-6, rope_in_fp32=False, qk_norm=True, block_causal=True,
                         norm_weight_fp32=True, head_dim_override=size["dim"] // size["n_heads"], **common)
    return ModelArgs(arch="llada", norm_eps=1e-5, rope_in_fp32=True, max_length=max(cfg.data.lengths), **common)


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warmup to ``lr``, then cosine down to ``lr * min_lr_ratio`` at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def noise_seed(seed: int, step: int) -> int:
    return int.from_bytes(hashlib.sha256(f"sparsed.noise/{seed}/{step}".encode()).digest()[:8], "little") >> 1


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # Norm gains (1-d) are not decayed: shrinking them towards 0 only fights the normalisation.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")


def config_json(cfg: TrainConfig, args: ModelArgs, n_params: int) -> dict[str, Any]:
    d = asdict(cfg)
    d["out"] = str(cfg.out)
    d["model_args"] = asdict(args)
    d["n_params"] = n_params
    d["bf16_bytes"] = 2 * n_params
    return d


def _identity(batch: Batch) -> Batch:
    # DataLoader workers get their collate function by pickling: a module-level function, no lambda
    return batch


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop saves and exits after the current step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (tests, notebooks): no handlers, no harm
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ANN401
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signal = signum

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class TaskAccuracy:
    """Answer-token accuracy per task over the steps since the last log line (device tensors until then)."""

    def __init__(self) -> None:
        self.pending: list[tuple[list[str], torch.Tensor, torch.Tensor]] = []

    def add(self, stats: dict[str, Any]) -> None:
        self.pending.append((stats["tasks"], stats["row_tokens"], stats["row_hits"]))

    def pop(self) -> dict[str, float]:
        tokens: dict[str, float] = {}
        hits: dict[str, float] = {}
        for tasks, row_tokens, row_hits in self.pending:
            for task, n, h in zip(tasks, row_tokens.tolist(), row_hits.tolist(), strict=True):
                tokens[task] = tokens.get(task, 0.0) + n
                hits[task] = hits.get(task, 0.0) + h
        self.pending.clear()
        return {t: round(hits[t] / tokens[t], 4) for t in sorted(tokens) if tokens[t] > 0}


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.tok_dir = Path(cfg.tokenizer) if cfg.tokenizer else project_tokenizer_path()
        self.tokenizer = load_tokenizer(str(self.tok_dir))
        self.device = resolve_device(cfg.device)
        self.args = model_args(cfg, self.tokenizer)
        torch.manual_seed(cfg.seed)
        # fp32 master weights; bf16 only inside autocast (and in the exported checkpoint)
        self.model = DiffusionLM(self.args).init_random(cfg.seed).to(self.device).train()
        if cfg.init_from:
            self._load_initial_weights(cfg.init_from)
        self.opt = make_optimizer(self.model, cfg, self.device)
        self.step = 0
        self.tokens_seen = 0
        self.elapsed_before = 0.0  # training seconds of earlier invocations (resume)
        self.hidden_fn = None
        if cfg.compile:
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
            # one graph per (batch, length) bucket; the loss's data-dependent gather stays eager
            self.hidden_fn = torch.compile(self.model.hidden_states, dynamic=False)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def _load_initial_weights(self, path: str) -> None:
        """Start from a saved model (fresh optimizer): continue training a shipped checkpoint."""
        from sparsed.models.loading import load_model

        start = load_model(path, device="cpu", dtype="fp32")
        if (start.args.arch, start.args.n_layers, start.args.n_kv_heads) != (
                self.args.arch, self.args.n_layers, self.args.n_kv_heads) or self.cfg.init_layers:
            self._warm_start(path, start)
            return
        if dataclasses.replace(start.args, max_length=self.args.max_length) != self.args:  # the context may grow
            raise ValueError(f"--init-from {path}: its architecture {start.args} differs from this run's {self.args}")
        self.model.load_state_dict(start.state_dict())

    def _warm_start(self, path: str, start: DiffusionLM) -> None:
        """Another family's or size's weights (see ``warm_start``): layers by ``init_layers`` (default evenly
        spaced), K/V heads mean-pooled into groups, SDAR's q/k norms fresh."""
        a, b = start.args, self.args
        state, fresh = warm_start_state(
            start.state_dict(), self.model.state_dict(), source_layers=a.n_layers, target_layers=b.n_layers,
            source_kv_heads=a.n_kv_heads, target_kv_heads=b.n_kv_heads, layer_map=self.cfg.init_layers or None)
        self.model.load_state_dict(state)
        log.info("warm start from %s (%s, %d layers, %d kv heads -> %s, %d, %d): %d fresh tensors: %s", path,
                 a.arch, a.n_layers, a.n_kv_heads, b.arch, b.n_layers, b.n_kv_heads, len(fresh),
                 ", ".join(fresh[:4]) + (" ..." if len(fresh) > 4 else ""))

    @property
    def n_params(self) -> int:
        return param_count(self.model)

    # -- state -----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
            "tokens_seen": self.tokens_seen, "elapsed": self.elapsed_before + self._run_time(),
            "model_args": asdict(self.args), "rng": ckpt.rng_state(), "data_seed": self.cfg.data.seed,
        }

    def load(self, state: dict[str, Any]) -> None:
        if state["model_args"] != asdict(self.args):
            raise ValueError(f"{self.out}: the saved model ({state['model_args']}) differs from this run's "
                             f"({asdict(self.args)}); use the same --preset/--model/--tokenizer or another --out")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        self.elapsed_before = float(state["elapsed"])
        ckpt.set_rng_state(state["rng"])

    def save(self) -> None:
        ckpt.save_state(self.out, self.state())

    def export(self) -> Path:
        extra = {"training": {"step": self.step, "tokens_seen": self.tokens_seen, "n_params": self.n_params,
                              "objective": self.cfg.objective}}
        if self.cfg.objective == "block":
            extra["block_size"] = self.cfg.block_size  # as SDAR's config.json states its training block
            if self.cfg.block_sizes:
                extra["training"]["block_sizes"] = list(self.cfg.block_sizes)
        return ckpt.export_inference(self.model, self.out, self.tok_dir, extra)

    def _run_time(self) -> float:
        return time.monotonic() - self._t0 if hasattr(self, "_t0") else 0.0

    # -- one step --------------------------------------------------------------------------------

    def train_step(self, batch: Batch) -> dict[str, Any]:
        """One optimizer step. Statistics stay on the device (a host sync per step would stall the
        launch queue of a model this small); ``_host_stats`` reads them when a step is logged."""
        cfg = self.cfg
        ids = batch.input_ids.to(self.device, non_blocking=True)
        plens = batch.prompt_lengths.to(self.device, non_blocking=True)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(noise_seed(cfg.seed, batch.step))
        full = torch.rand(ids.shape[0], device=self.device, generator=gen) < cfg.pretrain_frac
        noised = mask_answers(ids, plens, self.args.mask_token_id, cfg.mask_eps, gen, full)
        lr = lr_at(cfg, batch.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            if cfg.objective == "block":
                out = block_diffusion_loss(self.model, ids, noised, block_at(cfg, batch.step), self.hidden_fn)
            else:
                out = sft_loss(self.model, ids, noised, self.hidden_fn)
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        # Answer accuracy per task: SFT rows only, answer text only (the EOS fill is trivially right).
        content = ~full[out.rows] & (out.targets != self.args.eos_token_id)
        B = ids.shape[0]
        row_tokens = torch.zeros(B, device=self.device).index_add_(0, out.rows, content.float())
        row_hits = torch.zeros(B, device=self.device).index_add_(0, out.rows, (content & out.hits).float())
        return {"loss": out.loss.detach(), "lr": lr, "grad_norm": grad_norm.detach(), "n_masked": out.n_masked,
                "n_correct": out.n_correct, "row_tokens": row_tokens, "row_hits": row_hits, "tasks": batch.tasks}

    @staticmethod
    def _host_stats(stats: dict[str, Any]) -> dict[str, float]:
        n_masked = int(stats["n_masked"])
        return {"loss": float(stats["loss"]), "lr": stats["lr"], "grad_norm": float(stats["grad_norm"]),
                "masked_acc": float(stats["n_correct"]) / max(1, n_masked), "n_masked": n_masked}

    # -- the loop --------------------------------------------------------------------------------

    def _prepare_out(self) -> None:
        state_path = self.out / ckpt.STATE_FILE
        if self.cfg.resume:
            state = ckpt.load_state(self.out, self.device)
            if state is None:
                log.warning("--resume: no %s in %s, starting from scratch", ckpt.STATE_FILE, self.out)
            else:
                self.load(state)
                log.info("resumed at step %d (%d tokens seen)", self.step, self.tokens_seen)
        elif state_path.exists():
            raise FileExistsError(f"{state_path} exists: pass --resume to continue it, or choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        # Lines logged after the last save belong to steps that will be run again: drop them.
        log_path = self.out / "log.jsonl"
        if log_path.exists():
            keep = [ln for ln in log_path.read_text().splitlines() if ln.strip()
                    and json.loads(ln).get("step", 0) <= self.step]
            log_path.write_text("".join(ln + "\n" for ln in keep) if self.step else "")
        cfg_json = config_json(self.cfg, self.args, self.n_params)
        (self.out / "train_config.json").write_text(json.dumps(cfg_json, indent=2, default=str) + "\n")

    def _loader(self) -> torch.utils.data.DataLoader:
        cfg = self.cfg
        dataset = StepDataset(cfg.data, str(self.tok_dir), cfg.steps)
        workers = max(0, cfg.workers)
        return torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=range(self.step, cfg.steps), num_workers=workers,
            collate_fn=_identity, prefetch_factor=8 if workers else None, persistent_workers=False,
        )

    def run(self) -> dict[str, Any]:
        from tqdm import tqdm

        cfg = self.cfg
        self._prepare_out()
        log_path = self.out / "log.jsonl"
        self._t0 = time.monotonic()
        last_log_t, last_log_tokens = self._t0, self.tokens_seen
        data_wait = 0.0
        start_step = self.step
        stop_reason = "done"
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress, dynamic_ncols=True,
                   desc="train", unit="step")
        task_acc = TaskAccuracy()
        with StopFlag() as flag, log_path.open("a") as log_file:
            it = iter(self._loader())
            while self.step < cfg.steps:
                t_wait = time.monotonic()
                batch = next(it)
                data_wait += time.monotonic() - t_wait
                assert batch.step == self.step, (batch.step, self.step)
                stats = self.train_step(batch)
                task_acc.add(stats)
                self.step += 1
                self.tokens_seen += batch.n_tokens
                bar.update(1)
                if flag.signal is not None:
                    stop_reason = f"signal {flag.signal}"
                elif cfg.max_minutes is not None and time.monotonic() - self._t0 >= cfg.max_minutes * 60:
                    stop_reason = "time limit"
                elif cfg.stop_after is not None and self.step - start_step >= cfg.stop_after:
                    stop_reason = "stop_after"
                # the last step of a stopped run is logged too: a continued stage starts from it
                logged = self.step % cfg.log_every == 0 or self.step == cfg.steps or stop_reason != "done"
                if logged or self.step % cfg.save_every == 0 or self.step % cfg.export_every == 0:
                    host = self._host_stats(stats)  # the only host sync: never save a non-finite model
                    if not math.isfinite(host["loss"]):
                        stop_reason = "non-finite loss"
                        break  # no save: the last saved state is the one to resume from (lower --lr)
                if logged:
                    now = time.monotonic()
                    tps = (self.tokens_seen - last_log_tokens) / max(1e-9, now - last_log_t)
                    row = {"step": self.step, **{k: round(v, 6) for k, v in host.items()},
                           "tokens_per_s": round(tps, 1), "elapsed": round(self.elapsed_before + now - self._t0, 2),
                           "seq_len": batch.input_ids.shape[1], "batch": batch.input_ids.shape[0],
                           "tokens_seen": self.tokens_seen,
                           "data_wait_frac": round(data_wait / max(1e-9, now - last_log_t), 3),
                           "task_acc": task_acc.pop()}
                    log_file.write(json.dumps(row) + "\n")
                    log_file.flush()
                    bar.set_postfix(loss=f"{host['loss']:.3f}", acc=f"{host['masked_acc']:.2f}",
                                    L=row["seq_len"], tok_s=f"{tps:.0f}")
                    last_log_t, last_log_tokens, data_wait = now, self.tokens_seen, 0.0
                if stop_reason != "done":
                    break
                if self.step % cfg.save_every == 0:
                    self.save()
                if self.step % cfg.export_every == 0:
                    self.export()
            bar.close()
            del it  # stop the workers before the final (possibly slow) writes
            if stop_reason != "non-finite loss":
                self.save()
                self.export()
        plot = None
        try:
            from sparsed.training.plot import plot_loss

            plot = plot_loss(log_path)
        except Exception as exc:  # noqa: BLE001 - a plot must never lose a finished run
            log.warning("loss plot failed: %s", exc)
        return {"step": self.step, "stop_reason": stop_reason, "tokens_seen": self.tokens_seen,
                "elapsed": self.elapsed_before + self._run_time(), "n_params": self.n_params,
                "out": str(self.out), "plot": str(plot) if plot else None}


def train(cfg: TrainConfig) -> dict[str, Any]:
    return Trainer(cfg).run()
