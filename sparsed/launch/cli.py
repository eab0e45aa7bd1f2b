"""run.py's outer layer: bad settings end in one line and exit code 2, sweeps in their report's exit code.

Hydra prints its own multi-line message for composition errors (a wrong type, an unknown key or group
option); with ``HYDRA_FULL_ERROR=1`` it raises them instead, so that this layer can say them in one line.
Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any


def entry(main: Callable[[], Any]) -> int:
    """Call a ``@hydra.main`` function; return the process exit code."""
    os.environ["HYDRA_FULL_ERROR"] = "1"
    logging.getLogger("torch").setLevel(logging.ERROR)
    from sparsed.config import register_schemas
    from sparsed.launch import job, sweep
    from sparsed.launch.errors import one_line

    register_schemas()
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        line = one_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    return max(job.exit_code(), sweep.exit_code())
