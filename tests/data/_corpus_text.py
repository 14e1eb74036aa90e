"""A small deterministic training corpus and unseen test text shared by the data tests."""

from __future__ import annotations

import random

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "def", "class", "return", "import", "from", "self", "lambda", "yield", "value", "index", "count", "total", "print", "range", "list", "dict", "tuple", "while", "for", "if", "else", "elif", "try", "except", "None", "True", "False", "__init__"]


def make_documents(n_docs: int = 120, seed: int = 0) -> list[str]:
    """Code-like documents with indentation, tabs, punctuation, digits and some non-ASCII."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        lines = []
        for _ in range(rng.randint(3, 8)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))
            lines.append("    " * rng.randint(0, 2) + f"{words}({rng.randint(0, 99)}) = [x, y]:\t# café ñ")
        docs.append("\n".join(lines) + "\n")
    return docs


# New sentences built from seen characters (word order and some words are new).
UNSEEN = "    yield lazy__init__(42)\n\tfor café in dict: return [dog, fox] # ñ\n\nclass Truedog(index): print(7)\n"
