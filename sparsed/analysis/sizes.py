"""How big each notebook's computation is at each size: ``ci`` (seconds: the test), ``small`` (the shipped
model on two CPU cores, ``make figures`` in minutes) and ``full`` (the paper's sizes, real checkpoints on a
GPU). Lengths are prompt + generation tokens; the prompts are RULER samples of the evaluation seeds.
"""

from __future__ import annotations

from typing import Any

SIZES = ("ci", "small", "full")

_TABLE: dict[str, dict[str, dict[str, Any]]] = {
    "head_patterns": {
        "ci": {"task": "niah_single_1", "length": 192, "steps": 8, "gen_length": 8, "block": 16, "show": [1, 4, 6]},
        "small": {"task": "niah_single_1", "length": 512, "steps": 32, "gen_length": 32, "block": 16,
                  "show": [1, 15, 30]},
        "full": {"task": "niah_single_1", "length": 512, "steps": 32, "gen_length": 32, "block": 16,
                 "show": [1, 15, 30]},
    },
    "step_similarity": {
        "ci": {"task": "niah_single_2", "length": 192, "steps": 8, "gen_length": 8, "block": 32, "select": 0.3,
               "skip": 0.2},
        "small": {"task": "niah_single_2", "length": 1024, "steps": 32, "gen_length": 32, "block": 64, "select": 0.3,
                  "skip": 0.2},
        "full": {"task": "niah_single_2", "length": 4096, "steps": 32, "gen_length": 32, "block": 128, "select": 0.3,
                 "skip": 0.2},
    },
    "early_steps": {
        "ci": {"grid": {"steps": 8, "gen_length": 8, "xs": "all", "prompts": [["niah_single_1", 160]]},
               "coarse": {"steps": 12, "gen_length": 12, "xs": [0, 6, 12], "prompts": [["niah_single_1", 160]]},
               "block": 32, "select": 0.3, "ratio": 0.3},
        "small": {"grid": {"steps": 32, "gen_length": 32, "xs": "all",
                           "prompts": [["niah_single_1", 256], ["niah_multikey_1", 256]]},
                  "coarse": {"steps": 128, "gen_length": 128, "xs": [0, 16, 32, 64, 96, 128],
                             "prompts": [["niah_single_1", 320]]},
                  "block": 32, "select": 0.3, "ratio": 0.3},
        "full": {"grid": {"steps": 32, "gen_length": 32, "xs": "all",
                          "prompts": [[t, 1024] for t in ("niah_single_1", "niah_single_2", "niah_multikey_1",
                                                          "niah_multikey_2", "niah_multivalue", "vt")]},
                 "coarse": {"steps": 128, "gen_length": 128, "xs": [0, 4, 8, 16, 24, 32, 48, 64, 96, 128],
                            "prompts": [[t, 1024] for t in ("niah_single_1", "niah_multikey_1")]},
                 "block": 128, "select": 0.3, "ratio": 0.3},
    },
    "hyperparameters": {
        "ci": {"sweep": None, "length": 192, "steps": 8, "gen_length": 8, "tasks": ["niah_single_1"], "n": 1,
               "selects": [0.1, 0.5], "blocks": [16, 32], "block": 32, "select": 0.3},
        # the committed sweep's own settings (python -m sparsed.analysis.sweep's defaults), run afresh for another model
        "small": {"sweep": "results/analysis/sweep_small.json", "length": 512, "steps": None, "gen_length": None,
                  "tasks": ["niah_single_2", "niah_multikey_2", "niah_multikey_3", "niah_multivalue"], "n": 3,
                  "selects": [0.05, 0.1, 0.2, 0.3, 0.5, 0.7], "blocks": [16, 32, 64, 128], "block": 32, "select": 0.3},
        "full": {"sweep": None, "length": 4096, "steps": 32, "gen_length": 32,
                 "tasks": ["niah_single_1", "niah_multikey_1", "niah_multivalue", "vt"], "n": 25,
                 "selects": [0.05, 0.1, 0.2, 0.3, 0.5], "blocks": [32, 64, 128, 256], "block": 128, "select": 0.3},
    },
    "tables": {"ci": {}, "small": {}, "full": {}},
}


def size_of(notebook: str, size: str) -> dict[str, Any]:
    return dict(_TABLE[notebook][size])
