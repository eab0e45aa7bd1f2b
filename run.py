"""Run one generation or evaluation (or a sweep with -m): python run.py model=llada sparsed.skip=0.2 prompt=4k

Needs the project's packages (``make setup`` makes .venv; or ``pip install -e .``). Experiments of the
paper: ``python run.py +experiment=table1_llada -m`` (see README, Experiments).
"""

from __future__ import annotations

import sys

try:
    import hydra
    from omegaconf import DictConfig

    from sparsed.launch.cli import entry
except ModuleNotFoundError as exc:  # the usual cause: a Python without the project's venv
    print(f"error: module {exc.name!r} is not installed for {sys.executable}; run `make setup` and then "
          ".venv/bin/python run.py (or `pip install -e .` into your environment)", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> dict:
    from sparsed.launch.job import run_hydra_job

    return run_hydra_job(cfg)


if __name__ == "__main__":
    sys.exit(entry(main))
