"""Train the project tokenizer: a small byte-level BPE for the project's own small diffusion LMs.

    python scripts/train_tokenizer.py [--out sparsed/assets/tokenizer] [--vocab-size 4096] [--seed 0]

The corpus is generated here, deterministically from ``--seed``, and looks like what the small models
are trained and evaluated on: English-like sentences built from the ``wonderwords`` word lists, RULER's
needle sentences ("One of the special magic numbers for X is: N."), variable-tracking lines
("VAR ABCDE = 12345"), numbered word lists, coded-word text, UUID-like hex strings, arithmetic and chat
turns. Digits are split one per token before BPE so that the model can learn to copy and compose numbers
digit by digit (a merged "1234" token would make every 7-digit value a rare event).

Output: ``tokenizer.json`` (the ``tokenizers`` model), ``tokenizer_config.json`` (``PreTrainedTokenizerFast``,
special tokens, a Llama-3-style chat template like LLaDA-8B-Instruct's) and ``special_tokens_map.json``,
loadable with ``AutoTokenizer.from_pretrained(folder)`` and no remote code.
"""

from __future__ import annotations

import argparse
import json
import random
import string
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "sparsed" / "assets" / "tokenizer"

BOS, EOS, MASK = "<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>"
HEADER_START, HEADER_END, EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
# Order fixes the ids (0..5): eos first so that pad = eos = 0, as in many small-model tokenizers.
SPECIAL_TOKENS = [EOS, BOS, MASK, HEADER_START, HEADER_END, EOT]

# Llama-3 / LLaDA-8B-Instruct style: bos once, each turn "<|start_header_id|>role<|end_header_id|>\n\n
# content<|eot_id|>", and the generation prompt opens an assistant header. Written for this project
# (content is trimmed like LLaDA's template does so that stray whitespace never reaches the model).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

FUNCTION_WORDS = (
    "the a an of and to in is was for on that with as by at from it this be are or not but have has had "
    "they we you he she his her their our its which who what when where why how all some many more most "
    "can will would could should may might must do does did been being there here then than so if about "
    "into over after before between through during without under again also only very just even still"
).split()
ESSAY_WORDS = (
    "startup founder investor company essay programming language people work money idea users product "
    "school college write writing think thinking hard problem problems good great new old time year years "
    "world way life thing things something nothing everything others ambitious smart growth market"
).split()
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."


def word_lists() -> dict[str, list[str]]:
    """wonderwords' noun/verb/adjective lists read directly (no profanity, single words only)."""
    assets = resources.files("wonderwords") / "assets"
    profane = set((assets / "profanitylist.txt").read_text().split())

    def read(name: str) -> list[str]:
        words = [w.strip() for w in (assets / name).read_text().splitlines()]
        return sorted({w for w in words if w and w.isalpha() and w.isascii() and w not in profane})

    return {"noun": read("nounlist.txt"), "verb": read("verblist.txt"), "adj": read("adjectivelist.txt")}


class CorpusGen:
    """Deterministic generator of English-like lines; every method draws only from ``self.rng``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = word_lists()
        self.all_words = self.words["noun"] + self.words["verb"] + self.words["adj"]

    def number(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return str(self.rng.randint(1_000_000, 9_999_999))  # RULER's 7-digit magic numbers
        if r < 0.8:
            return str(self.rng.randint(0, 999))
        return str(self.rng.randint(0, 10 ** self.rng.randint(1, 12)))

    def uuid(self) -> str:
        hexd = "0123456789abcdef"
        return "-".join("".join(self.rng.choice(hexd) for _ in range(n)) for n in (8, 4, 4, 4, 12))

    def key(self) -> str:
        return f"{self.rng.choice(self.words['adj'])}-{self.rng.choice(self.words['noun'])}"

    def sentence(self) -> str:
        rng, w = self.rng, self.words
        parts: list[str] = []
        for _ in range(rng.randint(4, 18)):
            r = rng.random()
            if r < 0.4:
                parts.append(rng.choice(FUNCTION_WORDS))
            elif r < 0.6:
                parts.append(rng.choice(w["noun"]))
            elif r < 0.75:
                parts.append(rng.choice(w["verb"]))
            elif r < 0.88:
                parts.append(rng.choice(w["adj"]))
            elif r < 0.96:
                parts.append(rng.choice(ESSAY_WORDS))
            else:
                parts.append(self.number())
        text = " ".join(parts)
        if rng.random() < 0.2:
            i = rng.randrange(len(parts))
            text = " ".join(parts[:i]) + ", " + " ".join(parts[i:])
        return text[:1].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!", ";", ":"])

    def needle(self) -> str:
        kind = self.rng.choice(["numbers", "number", "uuids", "words"])
        value = {"numbers": self.number, "number": self.number, "uuids": self.uuid,
                 "words": lambda: self.rng.choice(self.words["noun"])}[kind]()
        key = self.key() if self.rng.random() < 0.7 else str(self.rng.randint(1_000_000, 9_999_999))
        templates = [
            f"One of the special magic {kind} for {key} is: {value}.",
            f"The special magic {kind} for {key} is: {value}.",
            f"Some special magic {kind} are hidden within the following text. Make sure to memorize it. "
            f"I will quiz you about the {kind} afterwards.",
            f"What are all the special magic {kind} for {key} mentioned in the provided text?",
            f"The special magic {kind} for {key} mentioned in the provided text are {value}",
            f"What is the special magic {kind} for {key} mentioned in the provided text?",
        ]
        return self.rng.choice(templates)

    def var_name(self) -> str:
        return "".join(self.rng.choice(string.ascii_uppercase) for _ in range(5))

    def vt(self) -> str:
        rng = self.rng
        lines = []
        for _ in range(rng.randint(1, 4)):
            a, b = self.var_name(), self.var_name()
            lines.append(f"VAR {a} = {rng.randint(10000, 99999)}" if rng.random() < 0.5 else f"VAR {a} = VAR {b}")
        if rng.random() < 0.3:
            lines.append(
                "Memorize and track the chain(s) of variable assignment hidden in the following text. "
                f"Question: Find all variables that are assigned the value {rng.randint(10000, 99999)} in the text "
                "above. Answer: According to the chain(s) of variable assignment in the text above, "
                f"{rng.randint(1, 5)} variables are assigned the value, they are: "
                + " ".join(self.var_name() for _ in range(rng.randint(1, 5)))
            )
        return " ".join(lines) if rng.random() < 0.5 else "\n".join(lines)

    def word_list(self) -> str:
        rng = self.rng
        n = rng.randint(5, 40)
        words = [rng.choice(self.all_words) for _ in range(n)]
        if rng.random() < 0.5:
            return " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))
        return ", ".join(words)

    def coded(self) -> str:
        rng = self.rng
        codes = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 6))) for _ in range(6)]
        return " ".join(rng.choice(codes + ["....", "..."]) for _ in range(rng.randint(10, 40)))

    def arithmetic(self) -> str:
        rng = self.rng
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        op, val = rng.choice([("+", a + b), ("-", a - b), ("*", a * b), ("plus", a + b), ("minus", a - b)])
        if rng.random() < 0.5:
            return f"What is {a} {op} {b}? The answer is {val}."
        return f"{a} {op} {b} = {val}"

    def chat(self) -> str:
        # Special tokens are left out of the corpus: the BPE trainer would otherwise spend merges on
        # their pieces ("<|", "|>"), which are never seen as text once they are added tokens.
        question = self.rng.choice([self.arithmetic, self.needle, self.sentence])()
        answer = self.sentence()
        return f"user\n\n{question}\nassistant\n\n{answer}"

    def line(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return " ".join(self.sentence() for _ in range(self.rng.randint(1, 6)))
        table = [
            (0.50, self.needle), (0.58, lambda: " ".join([NOISE] * self.rng.randint(1, 3))), (0.66, self.vt),
            (0.74, self.word_list), (0.80, self.coded), (0.88, self.arithmetic), (0.94, self.uuid),
            (1.01, self.chat),
        ]
        for hi, fn in table:
            if r < hi:
                return fn()
        raise AssertionError("unreachable")

    def lines(self, n: int) -> Iterator[str]:
        for _ in range(n):
            yield self.line()


def build_tokenizer(corpus: Iterator[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    # Digits first (one token each), then GPT-2 style byte-level splitting of the rest.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def write_tokenizer(tok: Tokenizer, out: Path, max_length: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    added = {
        str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                  "single_word": False, "special": True}
        for t in SPECIAL_TOKENS
    }
    extra = [HEADER_START, HEADER_END, EOT]
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "mask_token": MASK, "unk_token": None,
        "additional_special_tokens": extra,
        "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
        "model_max_length": max_length, "padding_side": "left",
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special_map = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "mask_token": MASK,
                   "additional_special_tokens": extra}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--vocab-size", type=int, default=4096, help="total, special tokens included")
    ap.add_argument("--lines", type=int, default=60_000, help="generated corpus lines")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=8192, help="model_max_length written to the config")
    args = ap.parse_args()
    tok = build_tokenizer(CorpusGen(args.seed).lines(args.lines), args.vocab_size)
    write_tokenizer(tok, args.out, args.max_length)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"vocab {tok.get_vocab_size()} -> {args.out} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
