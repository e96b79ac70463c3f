"""Write tests/data/textops-vectors.json: cases for the text operations and the position
conversions, with the answers collab.text.ops gives.

Run from the repository: `python -m tests.data.make_textops_vectors`.

The same file is checked against collab.text.ops (tests/test_textops_vectors.py) and against
the page's frontend/textops.js and positions.js (tests/node/vectors.test.mjs), so the two
implementations cannot drift apart. The cases come from a seeded PRNG: every run writes
the same file. Texts mix astral emoji, ZWJ sequences, flags, skin tones, CJK, combining
marks and "\\r\\n".

The textarea's display units (every "\\r\\n" and lone "\\r" shown as one "\\n") exist only
in the page; their answers come from `cp_to_display` below, the definition the page must
follow.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from collab.text.ops import (
    Op,
    apply,
    compose,
    diff,
    invert,
    normalize,
    transform,
    transform_position,
)
from collab.text.positions import cp_to_utf16, utf16_to_cp

PATH = Path(__file__).with_name("textops-vectors.json")
SEED = 20240608
CASES = 60  # random cases per section, besides the hand-picked ones

ATOMS = ["a", "b", " ", "\n", "\r\n", "\r", "é", "e\u0301", "中", "文"]
ATOMS += ["😀", "👨‍👩‍👧", "👍🏽", "🇫🇷"]  # astral, a ZWJ family, a skin tone, a flag


def random_text(rng: random.Random, most: int = 8) -> str:
    return "".join(rng.choice(ATOMS) for _ in range(rng.randint(0, most)))


def random_op(rng: random.Random, text: str) -> Op:
    """A canonical op spanning `text` (it may cut a grapheme, never a code point)."""
    op: Op = []
    pos = 0
    while pos < len(text):
        n = rng.randint(1, len(text) - pos)
        kind = rng.choice(["retain", "insert", "delete"])
        if kind == "insert":
            op.append(random_text(rng, 3) or "x")
        else:
            op.append(n if kind == "retain" else -n)
            pos += n
    if rng.random() < 0.3:
        op.append(random_text(rng, 3) or "y")
    return normalize(op)


def display(text: str) -> str:
    return re.sub("\r\n?", "\n", text)


def cp_to_display(text: str, cp: int) -> int:
    """UTF-16 index in the textarea of code point `cp`; between "\\r" and "\\n": before both."""
    if 0 < cp < len(text) and text[cp - 1] == "\r" and text[cp] == "\n":
        cp -= 1
    shown = display(text[:cp])
    return cp_to_utf16(shown, len(shown))


def display_to_cp(text: str, index: int) -> int:
    """The first code point position that shows at display index `index`."""
    return next(cp for cp in range(len(text) + 1) if cp_to_display(text, cp) == index)


HAND_PICKED_TEXTS = ["", "a", "héllo", "👨‍👩‍👧🇫🇷👍🏽", "中文e\u0301\r\n😀"]
HAND_PICKED_TEXTS += ["\r\n\r\n", "a\rb\r\nc\n"]


def texts(rng: random.Random) -> list[str]:
    return HAND_PICKED_TEXTS + [random_text(rng) for _ in range(CASES)]


def apply_cases(rng: random.Random) -> list[dict[str, Any]]:
    cases = []
    for text in texts(rng):
        op = random_op(rng, text)
        cases.append({"text": text, "op": op, "result": apply(text, op)})
    return cases


def compose_cases(rng: random.Random) -> list[dict[str, Any]]:
    cases = [  # empty components (not canonical) are skipped
        {"text": "", "a": [0], "b": ["x"], "result": compose([0], ["x"])},
        {"text": "ab", "a": [1, "", 1], "b": [-2, 0], "result": compose([1, "", 1], [-2, 0])},
    ]
    for text in texts(rng):
        a = random_op(rng, text)
        b = random_op(rng, apply(text, a))
        cases.append({"text": text, "a": a, "b": b, "result": compose(a, b)})
    return cases


def transform_cases(rng: random.Random) -> list[dict[str, Any]]:
    """Both priorities of each pair; hand-picked ties first (inserts at one spot)."""
    pairs: list[tuple[str, Op, Op]] = [
        ("", ["😀"], ["中"]),
        ("ab", [1, "👍🏽", 1], [1, "e\u0301", 1]),
        ("a🇫🇷b", [1, "x", -2, 1], [1, "y", -1, 2]),
        ("\r\n", [-1, "\r", 1], [1, -1, "\n"]),
        ("a", [-1, "x"], ["y", 1]),  # not canonical: the tie rule must not depend on it
    ]
    pairs += [(text, random_op(rng, text), random_op(rng, text)) for text in texts(rng)]
    cases = []
    for text, a, b in pairs:
        for a_first in (True, False):
            result = list(transform(a, b, a_first=a_first))
            cases.append({"text": text, "a": a, "b": b, "a_first": a_first, "result": result})
    return cases


def transform_position_cases(rng: random.Random) -> list[dict[str, Any]]:
    cases = [  # ops not in canonical form (delete before insert) move a caret alike
        {"pos": 1, "op": [-2, "X"], "result": transform_position(1, [-2, "X"])},
        {"pos": 0, "op": [-1, "😀", 1], "result": transform_position(0, [-1, "😀", 1])},
    ]
    for text in texts(rng):
        op = random_op(rng, text)
        for pos in sorted({0, len(text), rng.randint(0, len(text))}):
            cases.append({"pos": pos, "op": op, "result": transform_position(pos, op)})
    return cases


def normalize_cases(rng: random.Random) -> list[dict[str, Any]]:
    cases: list[list[int | str]] = [[], [0, "", 3, 2], [-1, "x", -2, "😀"], [2, -1, "a", "b", 1]]
    for _ in range(CASES):
        size = rng.randint(0, 6)
        cases.append([rng.choice([rng.randint(-3, 3), random_text(rng, 2)]) for _ in range(size)])
    return [{"op": op, "result": normalize(op)} for op in cases]


def invert_cases(rng: random.Random) -> list[dict[str, Any]]:
    cases = []
    for text in texts(rng):
        op = random_op(rng, text)
        cases.append({"text": text, "op": op, "result": invert(op, text)})
    return cases


def diff_cases(rng: random.Random) -> list[dict[str, Any]]:
    """Pairs of texts, without a caret and with one (in `new`, code points)."""
    pairs = [("aaa", "aaaa"), ("😀😀", "😀😀😀"), ("😀", "😁"), ("\r\n", "\r\r\n")]
    pairs += [("e\u0301", "e"), ("ab", "b")]
    for text in texts(rng):
        pairs.append((text, apply(text, random_op(rng, text))))
    cases = []
    for old, new in pairs:
        for caret in sorted({None, rng.randint(0, len(new))}, key=lambda c: -1 if c is None else c):
            cases.append({"old": old, "new": new, "caret": caret, "result": diff(old, new, caret)})
    return cases


def position_cases(rng: random.Random) -> list[dict[str, Any]]:
    """Every position of each text in all three units."""
    cases = []
    for text in texts(rng)[: len(HAND_PICKED_TEXTS) + CASES // 3]:
        for cp in range(len(text) + 1):
            shown = cp_to_display(text, cp)
            cases.append(
                {
                    "text": text,
                    "cp": cp,
                    "utf16": cp_to_utf16(text, cp),
                    "display": shown,
                    "display_to_cp": display_to_cp(text, shown),
                }
            )
    for case in cases:
        assert utf16_to_cp(case["text"], case["utf16"]) == case["cp"]
    return cases


def build() -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(SEED)
    return {
        "apply": apply_cases(rng),
        "compose": compose_cases(rng),
        "transform": transform_cases(rng),
        "transform_position": transform_position_cases(rng),
        "normalize": normalize_cases(rng),
        "invert": invert_cases(rng),
        "diff": diff_cases(rng),
        "positions": position_cases(rng),
    }


def dumps(vectors: dict[str, list[dict[str, Any]]]) -> str:
    """One case a line, so a diff of the file shows which cases changed."""
    sections = []
    for name, cases in vectors.items():
        lines = ",\n".join("    " + json.dumps(case, ensure_ascii=False) for case in cases)
        sections.append(f"  {json.dumps(name)}: [\n{lines}\n  ]")
    return "{\n" + ",\n".join(sections) + "\n}\n"


if __name__ == "__main__":
    PATH.write_text(dumps(build()), encoding="utf-8")
