"""The project's diffusion LMs as an lm-evaluation-harness model, registered as ``sparsed``.

Two ways to build one:

* from parts, for ``lm_eval.simple_evaluate(model=lm, ...)``::

      lm = SparsedLM.from_parts(model, tokenizer, method, gen, batch_size=8)

* from the command line, composing this repository's Hydra config (``configs/``)::

      python -m sparsed.eval.cli --model sparsed \\
          --model_args config=config,model=llada,model.path=/ckpt/LLaDA-1.5,attention=sparsed,gen.gen_length=256 \\
          --tasks sparsed_gsm8k --include_path sparsed/eval/tasks --num_fewshot 4

  (``sparsed.eval.cli`` imports this module so that lm-eval finds the model; every ``model_args`` key except
  ``config``, ``batch_size``, ``mc_num``, ``mc_batch_size``, ``seed`` and ``progress`` is a Hydra override;
  the device is ``model.device``, lm-eval's ``--device`` is ignored; ``task=gsm8k`` (or mmlu, humaneval)
  applies that benchmark's generation settings from ``configs/task``, as ``run.py`` does.)

``generate_until`` runs the diffusion sampler on left-padded batches (requests grouped by generation
settings, longest first), cuts each answer at the first end-of-text token and then at the request's
``until`` strings. Only ``until``, ``max_gen_toks`` and the diffusion keys ``steps``/``block_length`` of a
request are used; sampling keys (``temperature``, ``do_sample``...) are ignored on purpose, since the
sampler's settings are the run's ``gen.*`` (Table 3 gives them per model, not per lm-eval task).

``max_gen_toks`` becomes the generation length. For LLaDA the block length must divide it: the block
shrinks to the length when the length is shorter, otherwise the length is rounded up to a whole number of
blocks and the answer truncated back to ``max_gen_toks`` tokens. Steps keep the configured steps per
token (T = l stays T = l) and are rounded up to a multiple of the block count.

``loglikelihood`` is the Monte-Carlo bound of LLaDA's evaluation (``sparsed.eval.loglik``), seeded per
request so that results do not depend on request order or batching. Every answer is written to the
lm-eval cache as soon as it exists (``cache_hook.add_partial``), so a run wrapped in ``CachingLM``
(``use_cache=...``) resumes after an interruption instead of starting over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

from sparsed.attention.base import AttentionMethod, LayerStats
from sparsed.cache.base import CacheStrategy
from sparsed.config import GenConfig
from sparsed.eval.loglik import greedy_matches, mc_loglikelihood
from sparsed.models.transformer import DiffusionLM
from sparsed.sampling.common import left_pad
from sparsed.sampling.dispatch import sample

log = logging.getLogger("sparsed")

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# End-of-turn tokens of the supported families (LLaDA/Llama-3 style, Qwen/Dream, the project tokenizer).
END_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|endoftext|>", "<|end_of_text|>")


def fit_gen(gen: GenConfig, arch: str, n_tokens: int) -> GenConfig:
    """``gen`` with ``n_tokens`` generated tokens (rounded up to whole blocks when the sampler has blocks)."""
    if n_tokens == gen.gen_length:
        return gen
    steps = max(1, math.ceil(gen.steps * n_tokens / gen.gen_length))
    if gen.block_length is None:  # a sampler without blocks (Dream's released one)
        return dataclasses.replace(gen, gen_length=n_tokens, steps=steps)
    block = min(gen.block_length, n_tokens)
    length = math.ceil(n_tokens / block) * block
    n_blocks = length // block
    steps = max(n_blocks, math.ceil(steps / n_blocks) * n_blocks)
    return dataclasses.replace(gen, gen_length=length, block_length=block, steps=steps)


def cut_at_stops(text: str, until: Sequence[str]) -> str:
    """The text before the earliest occurrence of any stop string."""
    cut = len(text)
    for s in until:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


class DensityMeter:
    """Attention density over a whole evaluation (a method's own stats cover one generation only)."""

    def __init__(self) -> None:
        self.layers: dict[int, LayerStats] = {}

    def add(self, method: AttentionMethod | None) -> None:
        if method is not None:
            self._add(method.stats)

    def merge(self, other: DensityMeter) -> None:
        self._add(other.layers)

    def _add(self, stats: dict[int, LayerStats]) -> None:
        for layer, s in stats.items():
            acc = self.layers.setdefault(layer, LayerStats())
            acc.attended += s.attended
            acc.total += s.total
            acc.sparse_calls += s.sparse_calls
            acc.dense_calls += s.dense_calls

    def report(self, name: str) -> dict[str, Any]:
        attended = sum(s.attended for s in self.layers.values())
        total = sum(s.total for s in self.layers.values())
        return {
            "method": name,
            "density_mean": round(attended / total, 6) if total else 1.0,
            "density_per_layer": {str(i): round(s.density, 6) for i, s in sorted(self.layers.items())},
            "sparse_calls": sum(s.sparse_calls for s in self.layers.values()),
            "dense_calls": sum(s.dense_calls for s in self.layers.values()),
        }


@dataclass
class _Job:
    index: int
    ids: list[int]
    gen: GenConfig
    until: list[str]
    max_tokens: int
    args: tuple


def compose_config(config: str = "config", overrides: Iterable[str] = ()) -> Any:  # noqa: ANN401 - DictConfig
    """The run config ``run.py`` would see for these overrides (Hydra compose, no output directory)."""
    from hydra import compose, initialize_config_dir

    from sparsed.config import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides))


def request_key(args: tuple) -> str:  # type: ignore[type-arg]
    """lm-eval's cache key of a generate_until request."""
    from lm_eval.api.model import hash_args

    return hash_args("generate_until", args)


def _override_value(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


@register_model("sparsed")
class SparsedLM(LM):
    def __init__(
        self,
        model: DiffusionLM | str | None = None,
        tokenizer: Any = None,
        method: AttentionMethod | None = None,
        gen: Any = None,
        *,
        cache: CacheStrategy | None = None,
        config: str = "config",
        batch_size: int | str | None = 1,
        mc_num: int = 128,
        mc_batch_size: int = 32,
        seed: int = 0,
        progress: bool = True,
        max_batch_size: int | None = None,
        device: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        if not isinstance(model, DiffusionLM):
            # lm-eval's --device (default cuda:0) is not used: the device is model.device (auto by default)
            model, tokenizer, method, gen, cache = self._from_hydra(config, model, overrides)
        elif overrides:
            raise TypeError(f"unexpected arguments with a model object: {', '.join(overrides)}")
        if tokenizer is None or gen is None:
            raise TypeError("SparsedLM needs a tokenizer and generation settings (gen) with the model")
        self.model = model
        self._tokenizer = tokenizer
        self.method = method
        self.cache = cache
        fields = dataclasses.fields(GenConfig)
        self.gen = gen if isinstance(gen, GenConfig) else GenConfig(**{f.name: gen[f.name] for f in fields})
        self.batch_size = self._batch_size(batch_size)
        self.mc_num, self.mc_batch_size, self.seed = int(mc_num), int(mc_batch_size), int(seed)
        self.progress = bool(progress)
        self.progress_desc = "generate_until"
        self.meter = DensityMeter()
        self.generation_s = 0.0
        self.sequences = 0
        self.nfe = 0
        self.cached_forwards = 0
        # generated token ids by request (lm-eval's cache key), so that two runs compare token for token;
        # a persistent mapping (``use_token_store``) keeps them across a resumed run
        self.token_ids: Any = {}
        self._stop_ids = self._end_token_ids()
        self._device = model.device
        from sparsed.eval import distributed

        # lm-eval deals its requests out by these (torchrun); 0 / 1 in a single process
        self._rank, self._world_size = distributed.rank(), distributed.world_size()

    def use_token_store(self, path: str | Path) -> None:
        """Keep generated token ids in an SQLite file beside the request cache (written as they come)."""
        from sqlitedict import SqliteDict

        self.token_ids = SqliteDict(str(path), autocommit=True)

    def ids_of(self, args: tuple) -> list[int] | None:  # type: ignore[type-arg]
        return self.token_ids.get(request_key(args))

    def merge_ranks(self) -> None:
        """Fold every rank's counters into rank 0's (nothing to do in a single process)."""
        from sparsed.eval import distributed

        ids = dict(self.token_ids.items()) if distributed.rank() else {}
        parts = distributed.gather((self.generation_s, self.sequences, self.nfe, self.cached_forwards, self.meter.layers,
                                    ids))
        if parts is None or len(parts) == 1:
            return
        for p in parts[1:]:
            self.token_ids.update({k: v for k, v in p[5].items() if k not in self.token_ids})
        self.generation_s, self.sequences, self.nfe, self.cached_forwards = (sum(p[i] for p in parts) for i in range(4))
        self.meter = DensityMeter()
        for p in parts:
            self.meter._add(p[4])

    @classmethod
    def from_parts(cls, model: DiffusionLM, tokenizer: Any, method: AttentionMethod | None, gen: Any,
                   **kwargs: Any) -> SparsedLM:
        """An lm-eval model around built parts; ``cache=`` passes the KV-cache strategy."""
        return cls(model, tokenizer, method, gen, **kwargs)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None) -> SparsedLM:
        # lm-eval's CLI always passes batch_size/device: values given in --model_args win over its defaults
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        from sparsed.launch.errors import one_line

        try:
            return cls(**arg_dict, **extra)
        except Exception as exc:
            line = one_line(exc)
            if line is None:
                raise
            # lm-eval's CLI would print a traceback around a bad setting; one line, exit code 2, as run.py
            print(f"error: {line}", file=sys.stderr)
            raise SystemExit(2) from exc

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict[str, Any] | None = None) -> SparsedLM:
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @staticmethod
    def _from_hydra(config: str, model: str | None, overrides: dict[str, Any]) -> tuple:
        from sparsed.build import prepare
        from sparsed.config import validate
        from sparsed.eval.settings import LM_EVAL_TASKS, parse_settings, task_gen

        ov = [f"{k}={_override_value(v)}" for k, v in overrides.items()]
        if isinstance(model, str):
            ov.insert(0, f"model={model}")
        cfg = compose_config(config, ov)
        choices = validate(cfg)
        gen: Any = cfg.gen
        if cfg.task.name in LM_EVAL_TASKS:  # model_args task=gsm8k: that benchmark's Table 3 sampler settings
            s = parse_settings(cfg)
            gen = task_gen(cfg, s, s.gen_length)  # type: ignore[arg-type]
        built = prepare(cfg, choices)
        return built.model, built.tokenizer, built.method, gen, built.cache

    @staticmethod
    def _batch_size(v: int | str | None) -> int:
        if v is None:
            return 1
        if isinstance(v, str) and not v.isdigit():
            log.warning("batch_size=%s is not supported by the diffusion sampler; using 1", v)
            return 1
        n = int(v)
        if n < 1:
            raise ValueError(f"batch_size={v} must be >= 1")
        return n

    def _end_token_ids(self) -> set[int]:
        tok = self._tokenizer
        ids = {tok.eos_token_id, self.model.args.eos_token_id}
        for t in END_TOKENS:
            i = tok.convert_tokens_to_ids(t)
            if isinstance(i, int) and i != tok.unk_token_id:
                ids.add(i)
        ids.discard(None)
        ids.discard(self.model.args.mask_token_id)
        return ids  # type: ignore[return-value]

    # -- data parallelism: what lm-eval's evaluator calls when world_size > 1 ---------------------
    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        from sparsed.eval import distributed

        return distributed.all_gather_tensor(tensor.to(self._device) if self._device.type == "cuda" else tensor.cpu())

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:  # noqa: ANN401
        from sparsed.eval import distributed

        return distributed.gather(obj)

    def barrier(self) -> None:
        from sparsed.eval import distributed

        distributed.barrier()

    # -- what lm-eval asks of a model -------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:  # noqa: ANN401
        return self._tokenizer

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self._tokenizer, "name_or_path", "sparsed")).replace("/", "__")

    @property
    def eot_token_id(self) -> int | None:
        return self._tokenizer.eos_token_id

    @property
    def max_length(self) -> int | None:
        return self.model.args.max_length

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self._tokenizer, "chat_template", None) if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        # lm-eval renders the whole prompt (few-shot turns included) through this; the text then goes to
        # generate_until, which sees that it already starts with the template's special tokens.
        return self._tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        """Token ids of a context; special tokens are added unless the text already starts with BOS
        (a rendered chat template carries its own)."""
        if add_special_tokens is None:
            bos = self._tokenizer.bos_token
            add_special_tokens = not (bos and text.startswith(bos))
        return self._tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    # -- generation ---------------------------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        jobs = [self._job(i, req.args) for i, req in enumerate(requests)]
        results: list[str | None] = [None] * len(jobs)
        groups: dict[tuple, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(dataclasses.astuple(job.gen), []).append(job)
        bar = tqdm(total=len(jobs), desc=self.progress_desc, disable=disable_tqdm or not self.progress, dynamic_ncols=True)
        for group in groups.values():
            group.sort(key=lambda j: -len(j.ids))  # longest first: an out-of-memory shows at once
            for start in range(0, len(group), self.batch_size):
                batch = group[start : start + self.batch_size]
                texts, rows = self.generate_rows([j.ids for j in batch], batch[0].gen, [j.max_tokens for j in batch])
                for job, text, row in zip(batch, texts, rows, strict=True):
                    self.token_ids[request_key(job.args)] = row
                    text = cut_at_stops(text, job.until)
                    results[job.index] = text
                    self.cache_hook.add_partial("generate_until", job.args, text)
                bar.update(len(batch))
        bar.close()
        return results  # type: ignore[return-value]

    def _job(self, index: int, args: tuple) -> _Job:
        context, kwargs = args
        kwargs = dict(kwargs or {})
        until = kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        base = self.gen
        if "steps" in kwargs or "block_length" in kwargs:
            base = dataclasses.replace(base, steps=int(kwargs.get("steps", base.steps)),
                                       block_length=int(kwargs.get("block_length", base.block_length)))
        n = int(kwargs.get("max_gen_toks") or base.gen_length)
        gen = fit_gen(base, self.model.args.arch, n)
        ids = self.encode(context, kwargs.get("add_special_tokens"))
        return _Job(index, ids, gen, until, n, args)

    def generate_ids(self, prompts: list[list[int]], gen: GenConfig, max_tokens: list[int] | None = None) -> list[str]:
        """Decoded answers of one left-padded batch (each cut at its first end token, then to ``max_tokens``)."""
        return self.generate_rows(prompts, gen, max_tokens)[0]

    @torch.no_grad()
    def generate_rows(self, prompts: list[list[int]], gen: GenConfig,
                      max_tokens: list[int] | None = None) -> tuple[list[str], list[list[int]]]:
        """(decoded answers, generated token ids up to ``max_tokens``, before the end-token cut) of one batch."""
        pad = self._tokenizer.pad_token_id
        pad = self.model.args.pad_token_id if pad is None else pad
        ids, mask = left_pad(prompts, 0 if pad is None else pad)
        padded = bool((mask == 0).any())
        out = sample(self.model, ids, gen, self.method, attention_mask=mask if padded else None, cache=self.cache)
        self.meter.add(self.method)
        self.generation_s += out.total_time
        self.sequences += len(prompts)
        self.nfe += out.nfe
        self.cached_forwards += out.step_summary()["cached"]
        texts, rows = [], []
        for r, row in enumerate(out.generated.tolist()):
            limit = len(row) if max_tokens is None else max_tokens[r]
            row = row[:limit]
            rows.append(row)
            for i, t in enumerate(row):
                if t in self._stop_ids:
                    row = row[:i]
                    break
            texts.append(self._tokenizer.decode(row, skip_special_tokens=True))
        return texts, rows

    # -- likelihoods --------------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        out = []
        for req in tqdm(requests, desc="loglikelihood", disable=disable_tqdm or not self.progress, dynamic_ncols=True):
            context, continuation = req.args
            prefix, target = self._encode_pair(context, continuation)
            g = torch.Generator().manual_seed(self._request_seed(context, continuation))
            count = lambda: self.meter.add(self.method)  # a method's stats cover one forward here
            ll = mc_loglikelihood(self.model, prefix, target, mc_num=self.mc_num, batch_size=self.mc_batch_size,
                                  generator=g, attention=self.method, after_forward=count)
            greedy = greedy_matches(self.model, prefix, target, self.method, after_forward=count)
            out.append((ll, greedy))
            self.cache_hook.add_partial("loglikelihood", req.args, (ll, greedy))
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            "loglikelihood_rolling (perplexity tasks such as wikitext) is not supported by the sparsed model: "
            "a masked diffusion LM has no left-to-right factorisation to roll over; use generation or "
            "loglikelihood (multiple-choice) tasks"
        )

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        # Trailing spaces of the context belong to the continuation's first token (as lm-eval's models do).
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole = self.encode(context + continuation)
        prefix = self.encode(context)
        if whole[: len(prefix)] != prefix:  # the tokenizer merged across the boundary: encode apart
            return prefix, self._tokenizer(continuation, add_special_tokens=False)["input_ids"]
        return prefix, whole[len(prefix) :]

    def _request_seed(self, context: str, continuation: str) -> int:
        h = hashlib.sha256(f"{self.seed}\x00{context}\x00{continuation}".encode()).digest()
        return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF

    # -- reporting -----------------------------------------------------------------------------------
    def get_model_info(self) -> dict[str, Any]:
        return {"sparsed_gen": dataclasses.asdict(self.gen), "attention": getattr(self.method, "name", "dense")}

    def stats(self) -> dict[str, Any]:
        return {
            "generation_s": round(self.generation_s, 3), "sequences": self.sequences, "nfe": self.nfe,
            "cached_forwards": self.cached_forwards,
            "attention": self.meter.report(getattr(self.method, "name", "dense")),
        }
