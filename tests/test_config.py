"""Bad input gets one clear line naming the setting and the allowed values, before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from sparsed.config import check_canvas_length, register_schemas, validate
from sparsed.config_errors import ConfigError
from sparsed.runner import run
from tests.conftest import fixture_dir

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
register_schemas()


def cfg_with(*overrides: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sparsed.select=0"], r"sparsed.select=0.0 is outside \(0, 1\]"),
        (["sparsed.select=1.5"], r"sparsed.select=1.5 is outside \(0, 1\]"),
        (["sparsed.skip=1.0"], r"sparsed.skip=1.0 is outside \[0, 1\)"),
        (["sparsed.skip=-0.1"], r"sparsed.skip=-0.1 is outside \[0, 1\)"),
        (["sparsed.block_size=48"], "sparsed.block_size=48 is not a positive power of two"),
        (["sparsed.block_size=0"], "sparsed.block_size=0 is not a positive power of two"),
        (["sparsed.compat=exact"], "sparsed.compat='exact' is not allowed; choose one of: reference, paper"),
        (["sparsed.kernel=cuda"], "sparsed.kernel='cuda' is not allowed; choose one of: flex, fa4, sdpa_mask"),
        (["gen.gen_length=100", "gen.block_length=32"], "gen.gen_length=100 is not divisible by gen.block_length=32"),
        (["gen.gen_length=64", "gen.block_length=16", "gen.steps=30"],
         r"gen.steps=30 is not divisible by the number of blocks \(4"),
        (["attention=dense", "dense.backend=turbo"], "dense.backend='turbo' is not allowed"),
        (["attention=dense", "attention.name=magic"], "attention.name='magic' is not a known method; choose one of"),
        (["attention=sliding_window", "sliding_window.ws=0"], "sliding_window.ws=0 must be a positive number of tokens"),
        (["model.arch=gpt"], "model.arch='gpt' is not allowed; choose one of: dream, llada"),
        (["model=llada_small_random", "model.init=pretrained"], "model.path is not set"),
        (["model=dream_small_random", "gen.alg=greedy"], "gen.alg='greedy' is not allowed; choose one of: origin"),
        (["prompt.length=40"], "prompt.length=40 must exceed gen.gen_length"),
        (["model.dtype=int8"], "model.dtype='int8' is not allowed"),
    ],
)
def test_bad_values_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(cfg_with(*overrides))


def test_unknown_keys_fail_at_composition():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        cfg_with("sparsed.selct=0.3")


def test_missing_checkpoint_and_wrong_architecture_fail_before_loading(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint folder"):
        run(cfg_with("model=llada", f"model.path={tmp_path}/missing"), tmp_path)
    with pytest.raises(ConfigError, match="model.arch=dream but the checkpoint .* is a llada model"):
        run(cfg_with("model=dream", f"model.path={fixture_dir('llada-tiny')}"), tmp_path)
    assert not (tmp_path / "result.json").exists()


def test_prompt_longer_than_max_length_warns_or_fails():
    cfg = cfg_with("model=llada", "model.path=x")
    assert check_canvas_length(cfg, 4000) is None
    assert "exceeds model.max_length=4096" in check_canvas_length(cfg, 8192)
    strict = cfg_with("model=llada", "model.path=x", "model.strict_length=true")
    with pytest.raises(ConfigError, match="exceeds model.max_length=4096"):
        check_canvas_length(strict, 8192)


def test_good_configs_validate():
    for overrides in ([], ["attention=dense"], ["attention=streaming_llm", "paper=4k"], ["model=dream_small_random"],
                      ["model=llada", "model.path=x", "prompt=64k"], ["sparsed.compat=paper", "sparsed.skip=0"]):
        validate(cfg_with(*overrides))


def test_a_model_preset_applies_to_the_default_config():
    """configs/model/small.yaml sets sparsed.block_size=64; config.yaml composes _self_ first so it wins."""
    assert cfg_with().sparsed.block_size == 64
    assert cfg_with("paper=4k").sparsed.block_size == 128  # a paper preset overrides the model's
    assert cfg_with("paper=4k", "sparsed.block_size=32").sparsed.block_size == 32  # the command line wins
    assert cfg_with("model=llada", "model.path=x").sparsed.block_size == 128  # the method's own default


def test_paper_presets_set_every_method_node():
    from sparsed.eval.paper import expected

    short = cfg_with("paper=short")
    assert (short.sparsed.block_size, short.sparsed.select, short.sliding_window.ws, short.streaming_llm.ws) == (
        32, 0.5, 256, 256)
    assert cfg_with("paper=8k").sliding_window.ws == 4096
    assert expected("gsm8k", None)["sparsed"]["block_size"] == 32  # the warnings read the same files


def test_every_method_and_cache_has_its_own_node():
    from sparsed.attention import METHODS
    from sparsed.cache import CACHES

    cfg = cfg_with()
    for name in METHODS:
        assert name in cfg, name
    for name, spec in CACHES.items():
        assert (name in cfg) == spec.has_settings, name
