"""Training: the SFT diffusion loss, an optimisation step, exact resume, deterministic data."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sparsed.models.loading import load_model
from sparsed.models.transformer import DiffusionLM, ModelArgs
from sparsed.tokenizer import load_tokenizer
from sparsed.training.data import TRAIN_SEED_BASE, BatchMaker, DataConfig, Example, assemble
from sparsed.training.loss import Noised, answer_region, mask_answers, sft_loss
from sparsed.training.trainer import PRESETS, TrainConfig, Trainer, model_args

MASK = 2


def tiny_model(vocab: int = 64, seed: int = 0) -> DiffusionLM:
    args = ModelArgs(arch="llada", vocab_size=vocab, dim=32, n_layers=2, n_heads=4, n_kv_heads=4, ffn_dim=64,
                     norm_eps=1e-5, rope_theta=10000.0, qkv_bias=False, mask_token_id=MASK, eos_token_id=0)
    return DiffusionLM(args).init_random(seed)


def fixed_batch(B: int = 4, L: int = 24, vocab: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (B, L), generator=g)
    return ids, torch.tensor([5, 10, 12, 20])[:B]


def stub_ruler(task: str, length: int, tokenizer: Any, n: int, seed: int = 0, *, gen_length: int | None = None,
               chat_template: bool = True, haystack: str | None = None, essay_path: Any = None,
               use_cache: bool = True) -> list[dict[str, Any]]:
    """Stands in for sparsed.data.ruler.generate (same signature and sample fields), test-only."""
    import random

    out = []
    for i in range(n):
        rng = random.Random(f"{task}/{seed}/{i}")
        value = str(rng.randint(1_000_000, 9_999_999))
        filler = " ".join(["The grass is green."] * max(1, (length - (gen_length or 32)) // 8))
        out.append({"task": task, "index": i, "input": f"The magic number is {value}. {filler}\nWhat is it?",
                    "answer_prefix": " The number is", "outputs": [value], "gen_length": gen_length})
    return out


@pytest.fixture(scope="module")
def tok():  # noqa: ANN201
    return load_tokenizer(None)


# -- the loss ------------------------------------------------------------------------------------


def test_mask_answers_never_touches_the_prompt() -> None:
    ids, plens = fixed_batch(B=4, L=64)
    g = torch.Generator().manual_seed(0)
    seen = torch.zeros_like(ids, dtype=torch.bool)
    for _ in range(50):
        nz = mask_answers(ids, plens, MASK, generator=g)
        answer = answer_region(plens, ids.shape[1])
        assert not (nz.masked & ~answer).any()
        assert torch.equal(nz.input_ids[~nz.masked], ids[~nz.masked])
        assert (nz.input_ids[nz.masked] == MASK).all()
        assert ((nz.t > 0) & (nz.t <= 1)).all()
        seen |= nz.masked
    assert torch.equal(seen, answer_region(plens, ids.shape[1]))  # every answer token gets masked sometimes


def test_mask_ratio_follows_t() -> None:
    ids = torch.full((512, 200), 7)
    nz = mask_answers(ids, torch.zeros(512, dtype=torch.long), MASK, generator=torch.Generator().manual_seed(0))
    frac = nz.masked.float().mean(1)
    assert (frac - nz.t).abs().mean() < 0.03


def test_sft_loss_matches_the_formula() -> None:
    model = tiny_model()
    ids, plens = fixed_batch()
    nz = mask_answers(ids, plens, MASK, generator=torch.Generator().manual_seed(3))
    out = sft_loss(model, ids, nz)
    logits = model(nz.input_ids)
    B, L = ids.shape
    expected = torch.zeros(())
    for b in range(B):
        m = nz.masked[b]
        ce = F.cross_entropy(logits[b][m], ids[b][m], reduction="sum")
        expected = expected + ce / nz.t[b] / (L - plens[b])
    torch.testing.assert_close(out.loss, expected / B, rtol=1e-5, atol=1e-6)
    assert int(out.n_masked) == int(nz.masked.sum())


def test_full_rows_mask_the_prompt_and_normalise_by_length() -> None:
    model = tiny_model()
    ids, plens = fixed_batch(B=4, L=64)
    full = torch.tensor([True, False, True, False])
    nz = mask_answers(ids, plens, MASK, generator=torch.Generator().manual_seed(2), full=full)
    prompt = ~answer_region(plens, 64)
    assert (nz.masked & prompt)[full].any() and not (nz.masked & prompt)[~full].any()
    assert nz.norm.tolist() == [64.0, 54.0, 64.0, 44.0]
    out = sft_loss(model, ids, nz)
    logits = model(nz.input_ids)
    expected = sum(F.cross_entropy(logits[b][nz.masked[b]], ids[b][nz.masked[b]], reduction="sum")
                   / nz.t[b] / nz.norm[b] for b in range(4)) / 4
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)


def test_loss_weights_one_over_t_and_ignores_unmasked() -> None:
    model = tiny_model()
    ids, plens = fixed_batch()
    masked = answer_region(plens, ids.shape[1]) & (torch.arange(ids.shape[1]) % 2 == 0)
    noisy = torch.where(masked, torch.full_like(ids, MASK), ids)
    norm = (ids.shape[1] - plens).float()
    half = sft_loss(model, ids, Noised(noisy, masked, torch.full((4,), 0.5), norm)).loss
    full = sft_loss(model, ids, Noised(noisy, masked, torch.full((4,), 1.0), norm)).loss
    torch.testing.assert_close(half, 2 * full)
    # the targets at positions that are not masked (prompt, kept answer tokens) do not enter the loss
    other = ids.clone()
    other[~masked] = (other[~masked] + 1) % 64
    same = sft_loss(model, other, Noised(noisy, masked, torch.full((4,), 1.0), norm)).loss
    torch.testing.assert_close(same, full)


def test_a_few_steps_decrease_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    ids, plens = fixed_batch()
    nz = mask_answers(ids, plens, MASK, generator=torch.Generator().manual_seed(5))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss = sft_loss(model, ids, nz).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


# -- data ----------------------------------------------------------------------------------------


def data_cfg(seed: int = 0, **kw: Any) -> DataConfig:  # noqa: ANN401
    return DataConfig(seed=seed, lengths=(256, 512), tokens_per_batch=1024, gen_lengths=(32, 64), haystack="noise",
                      **kw)


def test_data_is_deterministic_per_seed_and_step(tok) -> None:  # noqa: ANN001
    a = BatchMaker(data_cfg(), tok, ruler_generate=stub_ruler)
    b = BatchMaker(data_cfg(), tok, ruler_generate=stub_ruler)
    for step in (0, 3, 7):
        x, y = a.batch(step), b.batch(step)
        assert torch.equal(x.input_ids, y.input_ids) and torch.equal(x.prompt_lengths, y.prompt_lengths)
    assert not torch.equal(a.batch(0).input_ids[:, :40], a.batch(1).input_ids[:, :40]) or \
        a.batch(0).input_ids.shape != a.batch(1).input_ids.shape
    c = BatchMaker(data_cfg(seed=1), tok, ruler_generate=stub_ruler)
    assert c.plan(0) != a.plan(0)
    # every RULER call uses a training seed, disjoint from evaluation seeds (< TRAIN_SEED_BASE)
    for step in range(5):
        assert all(seed >= TRAIN_SEED_BASE for _, _, seed, _ in a.plan(step)[1])


def test_batches_are_well_formed(tok) -> None:  # noqa: ANN001
    maker = BatchMaker(data_cfg(), tok, ruler_generate=stub_ruler)
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    for step in range(4):
        batch = maker.batch(step)
        B, L = batch.input_ids.shape
        assert L in (256, 512) and B == 1024 // L
        for row, plen in zip(batch.input_ids.tolist(), batch.prompt_lengths.tolist(), strict=True):
            text = tok.decode(row[:plen])
            assert text.startswith("<|startoftext|><|start_header_id|>user") and "assistant<|end_header_id|>" in text
            answer = row[plen:]
            end = answer.index(eot)
            assert end > 0 and set(answer[end + 1:]) <= {tok.eos_token_id} and len(answer) - end - 1 >= 1


def test_curriculum_starts_short(tok) -> None:  # noqa: ANN001
    cfg = DataConfig(lengths=(256, 512, 1024), curriculum_steps=100)
    assert cfg.allowed_lengths(0) == (256,)
    assert cfg.allowed_lengths(50) == (256, 512)
    assert cfg.allowed_lengths(100) == (256, 512, 1024)
    maker = BatchMaker(cfg, tok, ruler_generate=stub_ruler)
    assert all(maker.plan(s)[0] == 256 for s in range(10))


def test_length_weights_steer_the_buckets(tok) -> None:  # noqa: ANN001
    cfg = DataConfig(lengths=(1024, 256, 512), length_weights=(0.0, 1.0, 3.0))
    assert cfg.lengths == (256, 512, 1024) and cfg.length_weights == (1.0, 3.0, 0.0)  # sorted together
    maker = BatchMaker(cfg, tok, ruler_generate=stub_ruler)
    drawn = [maker.plan(s)[0] for s in range(400)]
    assert 1024 not in drawn and 0.65 < drawn.count(512) / len(drawn) < 0.85
    for bad in [(1.0, 1.0), (1.0, -1.0, 1.0), (0.0, 0.0, 0.0)]:
        with pytest.raises(ValueError, match="length_weights"):
            DataConfig(lengths=(256, 512, 1024), length_weights=bad)


def test_assemble_pads_answer_region_with_eos() -> None:
    batch = assemble([Example("x", [1, 5, 6], [7, 8, 5]), Example("y", [1, 9], [5])], length=8, eos_id=0)
    assert batch.input_ids.tolist() == [[1, 5, 6, 7, 8, 5, 0, 0], [1, 9, 5, 0, 0, 0, 0, 0]]
    assert batch.prompt_lengths.tolist() == [3, 2]


def test_real_ruler_generator_when_present(tok) -> None:  # noqa: ANN001
    from sparsed.training.data import default_ruler_generate

    if default_ruler_generate() is None:
        pytest.skip("sparsed.data.ruler.generate not available")
    maker = BatchMaker(data_cfg(), tok)
    x, y = maker.batch(2), BatchMaker(data_cfg(), tok).batch(2)
    assert torch.equal(x.input_ids, y.input_ids)
    assert any(t.startswith("niah") for t in x.tasks)


# -- the trainer: exact resume, export -----------------------------------------------------------


def train_cfg(out: Path, preset: str = "tiny", **kw: Any) -> TrainConfig:  # noqa: ANN401
    return TrainConfig(out=out, steps=3, lr=3e-3, warmup_steps=1, preset=preset, device="cpu", workers=0,
                       save_every=100, export_every=100, log_every=1, progress=False,
                       data=DataConfig(lengths=(256,), tokens_per_batch=512, gen_lengths=(32,), haystack="noise",
                                       weights={"qa_facts": 1.0, "qa_arith": 1.0}), **kw)


def log_losses(out: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def test_resume_gives_the_same_next_step(tmp_path: Path) -> None:
    straight = Trainer(train_cfg(tmp_path / "straight")).run()
    assert straight["step"] == 3
    first = Trainer(train_cfg(tmp_path / "cut", stop_after=2)).run()
    assert first["step"] == 2 and first["stop_reason"] == "stop_after"
    with pytest.raises(FileExistsError):
        Trainer(train_cfg(tmp_path / "cut"))._prepare_out()
    resumed = Trainer(train_cfg(tmp_path / "cut", resume=True)).run()
    assert resumed["step"] == 3
    a, b = log_losses(tmp_path / "straight"), log_losses(tmp_path / "cut")
    assert sorted(b) == [1, 2, 3]
    assert a[3] == b[3] and a[2] == b[2]
    # every log line carries the answer-token accuracy of the tasks trained since the line before
    rows = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    accs = [r["task_acc"] for r in rows]
    assert all(set(acc) <= {"qa_facts", "qa_arith"} for acc in accs) and any(accs)
    assert all(0.0 <= v <= 1.0 for acc in accs for v in acc.values())

    # the inference export loads through the regular loader, bf16, tokenizer alongside
    model = load_model(str(tmp_path / "cut" / "model"), device="cpu", dtype="bf16")
    assert model.args.n_layers == PRESETS["tiny"]["n_layers"] and model.args.mask_token_id == 2
    assert load_tokenizer(str(tmp_path / "cut" / "model")).mask_token_id == 2


def test_small_preset_fits_20_mb(tok) -> None:  # noqa: ANN001
    with torch.device("meta"):  # only the size: no weights
        model = DiffusionLM(model_args(TrainConfig(out=Path("unused")), tok))
    n = sum(p.numel() for p in model.parameters())
    assert 2 * n < 20_000_000, n


def test_init_from_the_shipped_model(tmp_path: Path) -> None:
    """A new run can start from the shipped weights (the optimizer state of its run was not kept)."""
    cfg = train_cfg(tmp_path / "cont", preset="small", init_from="sparsed/assets/small-dlm")
    trainer = Trainer(cfg)
    shipped = load_model("sparsed/assets/small-dlm", device="cpu", dtype="fp32")
    ids = torch.randint(0, 4000, (1, 16))
    with torch.no_grad():
        assert torch.equal(trainer.model.eval()(ids), shipped(ids))
    with pytest.raises(ValueError, match="--init-from .* differs"):
        Trainer(train_cfg(tmp_path / "bad", init_from="sparsed/assets/small-dlm"))  # tiny preset


def test_a_block_diffusion_run_warm_starts_from_the_shipped_bidirectional_model(tmp_path: Path) -> None:
    """Issue 14's start: the shipped LLaDA-layout weights into the SDAR architecture (q/k norms fresh)."""
    cfg = train_cfg(tmp_path / "bd", preset="small", init_from="sparsed/assets/small-dlm", objective="block")
    trainer = Trainer(cfg)
    shipped = load_model("sparsed/assets/small-dlm", device="cpu", dtype="fp32").state_dict()
    ours = trainer.model.state_dict()
    assert trainer.args.arch == "sdar"
    for name, t in shipped.items():
        assert torch.equal(ours[name], t), name
    fresh = [n for n in ours if n not in shipped]
    assert fresh and all(n.endswith(("q_norm.weight", "k_norm.weight")) for n in fresh)
    assert all(bool((ours[n] == 1).all()) for n in fresh)
    with pytest.raises(ValueError, match="does not fit|cannot map"):
        Trainer(train_cfg(tmp_path / "bad", init_from="sparsed/assets/small-dlm", objective="block"))  # tiny preset


def test_stitched_stages_count_from_the_first_start(tmp_path: Path) -> None:
    from sparsed.training.plot import main as plot_main
    from sparsed.training.plot import stitch

    logs = []
    for stage, n in enumerate((3, 2), start=1):
        path = tmp_path / f"s{stage}.jsonl"
        path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s, "elapsed": 10.0 * s, "tokens_seen": 100 * s,
                                            "task_acc": {"vt": 0.1 * s}}) + "\n" for s in range(1, n + 1)))
        logs.append(path)
    rows = stitch(logs)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["stage"] for r in rows] == [1, 1, 1, 2, 2] and rows[3]["stage_step"] == 1
    assert rows[-1]["elapsed"] == 50.0 and rows[-1]["tokens_seen"] == 500
    plot_main([str(p) for p in logs] + ["--stitch", "--out", str(tmp_path / "all.jsonl"), "--png", str(tmp_path / "a.png")])
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 5


# -- the block-diffusion objective (SDAR) ----------------------------------------------------------


def tiny_sdar(vocab: int = 64, seed: int = 0) -> DiffusionLM:
    args = ModelArgs(arch="sdar", vocab_size=vocab, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
                     norm_eps=1e-6, rope_theta=10000.0, qkv_bias=False, mask_token_id=MASK, eos_token_id=0,
                     rope_in_fp32=False, qk_norm=True, block_causal=True, norm_weight_fp32=True)
    return DiffusionLM(args).init_random(seed)


def test_block_diffusion_mask_layout() -> None:
    from sparsed.training.block_loss import block_diffusion_mask

    m = block_diffusion_mask(8, 4)[0, 0].int()
    noisy_q, clean_q = m[:8], m[8:]
    assert noisy_q[5].tolist() == [0, 0, 0, 0, 1, 1, 1, 1] + [1, 1, 1, 1, 0, 0, 0, 0]  # own noisy block, earlier clean
    assert noisy_q[1].tolist() == [1, 1, 1, 1, 0, 0, 0, 0] + [0] * 8  # the first block has no clean prefix
    assert clean_q[1].tolist() == [0] * 8 + [1, 1, 1, 1, 0, 0, 0, 0]  # clean: block-causal over clean only
    assert clean_q[6].tolist() == [0] * 8 + [1] * 8


def test_block_loss_denoises_each_block_from_its_clean_prefix() -> None:
    """The noisy half's block j is what the block sampler computes for block j after clean blocks 0..j-1; the
    loss is SDAR's: sum of CE / t over the batch, divided by the batch's answer tokens."""
    from sparsed.training.block_loss import block_diffusion_loss

    model = tiny_sdar()
    ids, plens = fixed_batch(B=3, L=24)
    nz = mask_answers(ids, plens, MASK, generator=torch.Generator().manual_seed(4))
    out = block_diffusion_loss(model, ids, nz, block=4)
    b, L = 4, 24
    expected_sum = torch.zeros(())
    for r in range(3):
        for j in range(L // b):
            lo, hi = j * b, (j + 1) * b
            canvas = torch.cat([ids[r : r + 1, :lo], nz.input_ids[r : r + 1, lo:hi]], dim=1)
            logits = model.head(model.hidden_states(canvas, block=b))[0, lo:hi]
            m = nz.masked[r, lo:hi]
            if m.any():
                expected_sum = expected_sum + F.cross_entropy(logits[m], ids[r, lo:hi][m], reduction="sum") / nz.t[r]
    torch.testing.assert_close(out.loss, expected_sum / nz.norm.sum(), rtol=1e-5, atol=1e-6)
    assert int(out.n_masked) == int(nz.masked.sum())


def test_block_objective_trains_and_exports_the_sdar_layout(tmp_path: Path) -> None:
    """The CPU smoke test of --objective block (scripts/train_small_dlm.py --tiny --steps 20), loaded by run.py."""
    import importlib.util

    from tests.test_run_cli import run_py

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_small_dlm.py"
    spec = importlib.util.spec_from_file_location("train_small_dlm", script)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)

    out = tmp_path / "bd"
    cli.main(["--out", str(out), "--device", "cpu", "--tiny", "--steps", "20", "--objective", "block", "--workers", "0",
          "--no-progress", "--haystack", "noise"])
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["model_type"] == "sdar" and cfg["block_size"] == 4 and cfg["training"]["objective"] == "block"
    losses = log_losses(out)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses.values())
    model = load_model(str(out / "model"), device="cpu", dtype="fp32")
    assert model.args.arch == "sdar" and model.args.qk_norm and model.args.block_causal
    proc = run_py("model=sdar", f"model.path={out / 'model'}", "attention=dense", "cache=block_prefix", "prompt=short",
                  "gen.gen_length=8", "gen.steps=8", "run.warmup=false", "run.progress=false",
                  f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["config"]["model"]["arch"] == "sdar" and result["nfe"] > 0 and result["answer_token_ids"]


def test_mixed_block_sizes_round_robin_by_step_and_cli_list() -> None:
    """--block-size 4,16 trains step s with block (4, 16)[s % 2]; the first is the one the export states."""
    import importlib.util

    from sparsed.training.trainer import TrainConfig, block_at

    cfg = TrainConfig(out="x", block_size=4, block_sizes=(4, 16))
    assert [block_at(cfg, s) for s in range(4)] == [4, 16, 4, 16]
    assert block_at(TrainConfig(out="x", block_size=8), 3) == 8
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_small_dlm.py"
    spec = importlib.util.spec_from_file_location("train_small_dlm", script)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    parsed = cli.config_from_args(cli.parse_args(["--out", "x", "--objective", "block", "--block-size", "4,16"]))
    assert parsed.block_size == 4 and parsed.block_sizes == (4, 16)
    with pytest.raises(SystemExit, match="--block-size"):
        cli.config_from_args(cli.parse_args(["--out", "x", "--block-size", "4,x"]))


def test_warm_start_into_fewer_layers_and_grouped_kv_heads(tmp_path: Path) -> None:
    """--layers 6 --kv-heads 2 from the 8-layer, 8-kv-head shipped model: layers evenly spaced (ends kept),
    each K/V head the mean of its group of 4 source heads, everything else copied."""
    from sparsed.training.warm_start import even_layer_map, pool_kv_heads

    assert even_layer_map(8, 6) == (0, 1, 3, 4, 6, 7) and even_layer_map(8, 8) == tuple(range(8))
    t = torch.arange(4 * 2 * 3, dtype=torch.float32).reshape(4 * 2, 3)  # 4 heads of dim 2
    pooled = pool_kv_heads(t, 4, 2)
    assert torch.equal(pooled[:2], (t[0:2] + t[2:4]) / 2) and torch.equal(pooled[2:], (t[4:6] + t[6:8]) / 2)
    cfg = train_cfg(tmp_path / "bd6", preset="small", init_from="sparsed/assets/small-dlm", objective="block",
                    model={"n_layers": 6, "n_kv_heads": 2})
    ours = Trainer(cfg).model.state_dict()
    src = load_model("sparsed/assets/small-dlm", device="cpu", dtype="fp32").state_dict()
    for i, j in enumerate(even_layer_map(8, 6)):
        assert torch.equal(ours[f"layers.{i}.wq.weight"], src[f"layers.{j}.wq.weight"])
        assert torch.equal(ours[f"layers.{i}.w_down.weight"], src[f"layers.{j}.w_down.weight"])
        assert torch.allclose(ours[f"layers.{i}.wk.weight"], pool_kv_heads(src[f"layers.{j}.wk.weight"], 8, 2))
    assert torch.equal(ours["embed.weight"], src["embed.weight"])
    picked = Trainer(train_cfg(tmp_path / "bd6b", preset="small", init_from="sparsed/assets/small-dlm",
                               objective="block", model={"n_layers": 2}, init_layers=(7, 0))).model.state_dict()
    assert torch.equal(picked["layers.0.wq.weight"], src["layers.7.wq.weight"])
