"""Dream's sampler (``diffusion_generate``): the whole canvas every step, no semi-AR blocks.

``origin`` unmasks each masked token with probability 1 - s/t; ``maskgit_plus`` / ``topk_margin`` /
``entropy`` commit the ``int(n_masked * (1 - s/t))`` most confident predictions (all on the last step),
with confidence = probability of the sampled token / top1-top2 margin / negative entropy of the
top-p/top-k-filtered distribution (top_k defaults to 50, as the reference inherits it). Dream's logits
are shifted by one (``DiffusionLM.token_logits`` does that), and only the generation region goes through
the LM head.
"""

from __future__ import annotations

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo
from sparsed.config_errors import ConfigError
from sparsed.models.transformer import DiffusionLM
from sparsed.sampling.common import (
    GenerationOutput,
    StepClock,
    make_canvas,
    method_session,
    pad_counts_of,
    progress,
)

ALGORITHMS = ("origin", "maskgit_plus", "topk_margin", "entropy")


def check_dream_settings(gen_length: int, steps: int, alg: str, top_p: float | None, top_k: int | None) -> None:
    if gen_length <= 0 or steps <= 0:
        raise ConfigError(f"gen.gen_length={gen_length} and gen.steps={steps} must be > 0")
    if alg not in ALGORITHMS:
        raise ConfigError(f"gen.alg={alg!r} is not allowed; choose one of: {', '.join(ALGORITHMS)}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"gen.top_p={top_p} is outside (0, 1]")
    if top_k is not None and top_k <= 0:
        raise ConfigError(f"gen.top_k={top_k} must be a positive integer")


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest prefix of sorted tokens whose mass exceeds ``top_p`` (the first always stays)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop = cum > top_p
    drop[..., 1:] = drop[..., :-1].clone()
    drop[..., 0] = False
    mask = torch.zeros_like(drop).scatter_(-1, order, drop)
    return logits.masked_fill(mask, torch.finfo(logits.dtype).min)


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    k = min(top_k, logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, torch.finfo(logits.dtype).min)


def sample_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float | None,
    top_k: int | None,
    confidence: str,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, token) for each row of ``logits`` [N, V]."""
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = top_p_filter(logits, top_p)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    probs = logits.softmax(-1)
    if temperature > 0:
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        conf = probs.gather(-1, tokens[:, None]).squeeze(-1)
    else:
        conf, tokens = probs.max(-1)
    if confidence == "topk_margin":
        top2 = probs.topk(2, dim=-1).values
        conf = top2[:, 0] - top2[:, 1]
    elif confidence == "entropy":
        conf = (probs * torch.log(probs + 1e-10)).sum(-1)
    return conf, tokens


@torch.no_grad()
def diffusion_generate(
    model: DiffusionLM,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int = 128,
    steps: int = 128,
    temperature: float = 0.0,
    top_p: float | None = None,
    # Reference quirk, kept on purpose: Dream's `diffusion_generate` builds its generation config with
    # `DreamGenerationConfig.from_model_config(model.config)`, and under transformers 4.46 every
    # `PretrainedConfig` carries the legacy generation defaults, `top_k=50` among them. So a call that does
    # not pass `top_k` still truncates to the 50 most likely tokens (after top-p), which changes the
    # renormalised confidences even at temperature 0. Pass `top_k=None` to turn it off, as in the reference.
    top_k: int | None = 50,
    alg: str = "maskgit_plus",
    alg_temp: float | None = None,
    eps: float = 1e-3,
    mask_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    attention: AttentionMethod | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> GenerationOutput:
    check_dream_settings(max_new_tokens, steps, alg, top_p, top_k)
    mask_id = model.args.mask_token_id if mask_id is None else mask_id
    device = model.device
    B, P = input_ids.shape
    L = P + max_new_tokens
    x, full_mask = make_canvas(input_ids, attention_mask, max_new_tokens, mask_id, device)
    info = GenerationInfo(batch_size=B, canvas_length=L, prompt_length=P, gen_length=max_new_tokens,
                          total_steps=steps, pad_counts=pad_counts_of(attention_mask))
    timesteps = torch.linspace(1, eps, steps + 1, device=device)
    clock = StepClock(device)
    gen = slice(P, L)
    with method_session(attention, info):
        for i in progress(range(steps), show_progress, "denoising"):
            with clock.step():
                if attention is not None:
                    attention.set_step(i)
                masked = x[:, gen] == mask_id
                logits = model.token_logits(x, gen, attention, full_mask)
                t, s = timesteps[i], timesteps[i + 1]
                mask_logits = logits[masked]
                region = x[:, gen]
                if alg == "origin":
                    p_transfer = 1 - s / t if i < steps - 1 else 1
                    x0 = torch.full_like(region[masked], mask_id)
                    u = torch.rand(x0.shape, device=device, generator=generator)
                    move = u < p_transfer
                    if bool(move.any()):
                        _, x0[move] = sample_tokens(mask_logits[move], temperature, top_p, top_k, "prob", generator)
                    region[masked] = x0
                else:
                    conf, x0 = sample_tokens(mask_logits, temperature, top_p, top_k, alg, generator)
                    n_masked = masked.sum() / masked.shape[0]
                    n = int(n_masked * (1 - s / t)) if i < steps - 1 else int(n_masked)
                    full_conf = torch.full(region.shape, -torch.inf, dtype=logits.dtype, device=device)
                    full_conf[masked] = conf
                    if n > 0:
                        if not alg_temp:
                            pick = full_conf.topk(n, dim=-1).indices
                        else:
                            w = torch.softmax(full_conf / alg_temp, dim=-1)
                            pick = torch.multinomial(w, n, generator=generator)
                        cand = torch.full_like(region, mask_id)
                        cand[masked] = x0
                        rows = torch.arange(B, device=device)[:, None].expand_as(pick)
                        region[rows, pick] = cand[rows, pick]
                x[:, gen] = region
    return GenerationOutput(sequences=x, prompt_length=P, nfe=steps, step_times=clock.times)
