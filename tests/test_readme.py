"""README code blocks run as written (the ones that need no training budget or placeholders)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_analyze_runs_you_already_have_block_runs_and_says_what_it_promises():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(python_block("### Analyze runs you already have"), "README.md", "exec"), {})
    text = out.getvalue()
    assert text.startswith("DISAGREE: ")  # the findings come first
    assert "predict() uses Approach 2 (IsoFLOP parabolas)" in text
    assert re.search(r"^3\.9\de\+11 params, 1\.6\de\+13 tokens \(approach_2\)$", text, re.M)
    assert "disagree: at C=3.8e+25 Approach 2 and Approach 3 disagree" in text
