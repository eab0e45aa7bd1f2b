"""Rebuild the paper's tables from sweep folders (the logic is sparsed/tables.py).

    python experiments/collect.py multirun/table1_llada               # every table its results fill
    python experiments/collect.py multirun/table2 --table table2
    python experiments/collect.py multirun/fig4 multirun/fig5 --out figures/
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sparsed.tables import *  # noqa: E402, F403 - the module's names, for scripts that import this file
from sparsed.tables import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
