"""HumanEval pass@1 by executing each completion with the problem's tests in a fresh Python process.

Every program runs in its own process group in a temporary directory, with a minimal environment, a
wall-clock timeout (the whole group is killed, so a forked or looping child cannot survive) and an
address-space limit. That isolates the evaluation from crashes and hangs, not from malicious code: run it
where executing model-written code is acceptable (a container or throw-away machine).

Completions are turned into programs the way both base and instruct models answer:
* a fenced code block (```python ... ```) is taken out of a chat-style answer first;
* code that defines the entry point itself is appended after the prompt (its definition replaces the
  prompt's stub, and the prompt's imports and helpers stay available);
* anything else is a continuation of the prompt's function body, cut at the first top-level statement
  (``\\nclass``, ``\\ndef``, ``\\n#``, ``\\nif``, ``\\nprint``: the stop sequences of the HumanEval paper).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
MEMORY_LIMIT_BYTES = 4 * 2**30
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|$)", re.S | re.I)


@dataclass
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout
    detail: str = ""


def _limit_memory() -> None:  # runs in the child before exec
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):
        pass


def run_program(source: str, timeout_s: float) -> Outcome:
    """Run ``source`` with the current interpreter; passed = exit status 0 within ``timeout_s`` seconds."""
    with tempfile.TemporaryDirectory(prefix="sparsed_exec_") as tmp:
        path = os.path.join(tmp, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-I", path], cwd=tmp, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=_limit_memory if os.name == "posix" else None,  # noqa: PLW1509 - no threads are forked here
        )
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return Outcome(False, "timeout", f"timed out after {timeout_s:g} s")
        finally:
            _kill_group(proc)  # children the program left behind
        if proc.returncode == 0:
            return Outcome(True, "passed")
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
        return Outcome(False, "failed", tail[0] if tail else f"exit status {proc.returncode}")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def extract_code(generation: str) -> str:
    """The first fenced code block of a chat-style answer (unterminated fences included), else the text."""
    m = _FENCE.search(generation)
    return m.group(1) if m else generation


def truncate_body(completion: str, stops: Sequence[str] = STOP_SEQUENCES) -> str:
    cut = len(completion)
    for s in stops:
        i = completion.find(s)
        if 0 <= i < cut:
            cut = i
    return completion[:cut]


def build_program(problem: dict[str, Any], generation: str) -> str:
    """Prompt + completion + the problem's tests + ``check(entry_point)``."""
    prompt, entry = problem["prompt"], problem["entry_point"]
    code = extract_code(generation)
    if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.M):
        solution = prompt + "\n" + code
    else:
        solution = prompt + truncate_body(code)
    return f"{solution}\n\n{problem['test']}\n\ncheck({entry})\n"


def check_completion(problem: dict[str, Any], generation: str, timeout_s: float = 5.0) -> Outcome:
    return run_program(build_program(problem, generation), timeout_s)


def humaneval_process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, float]:
    outcome = check_completion(doc, results[0], float(doc.get("timeout_s", 5.0)))
    return {"pass@1": float(outcome.passed)}
