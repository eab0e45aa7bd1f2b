"""Run one generation (or a sweep with -m): python run.py model=llada sparsed.skip=0.2 prompt=4k"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sparsed.config import register_schemas
from sparsed.config_errors import ConfigError

register_schemas()


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    from sparsed.runner import run, summary_lines

    try:
        result = run(cfg, HydraConfig.get().runtime.output_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    for line in summary_lines(result):
        print(line)
    if cfg.run.wandb:
        from sparsed.tracking import log_to_wandb

        log_to_wandb(result, cfg.run.wandb_project)


if __name__ == "__main__":
    logging.getLogger("torch").setLevel(logging.ERROR)
    main()
