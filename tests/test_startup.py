"""Start-up stays cheap: `import flops_fit` and `ff-* --help` import neither torch, pandas nor scipy
(paid per run process and per SLURM task otherwise)."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "pandas", "scipy", "matplotlib", "hydra")

PROBE = """
import sys
{code}
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def _heavy_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)], capture_output=True,
                         text=True, timeout=120)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY=")]
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    return [m for m in line[-1][len("HEAVY="):].split(",") if m]


def test_import_flops_fit_imports_no_heavy_library():
    assert _heavy_after("import flops_fit") == []


@pytest.mark.parametrize("stage", ["plan", "train", "analyze", "visualize", "run", "train_model"])
def test_cli_help_imports_no_heavy_library(stage):
    code = (f"from flops_fit.cli.main import {stage}_main\n"
            "try:\n"
            f"    {stage}_main(['--help'])\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code")
    assert _heavy_after(code) == []


def test_names_still_resolve_on_first_use():
    assert "torch" not in _heavy_after("import flops_fit as ff; ff.MockLaw; ff.SweepPlan")  # planning needs no torch
    heavy = _heavy_after("import flops_fit as ff; ff.Result")
    assert "pandas" in heavy  # the analysis came in when it was asked for
    out = subprocess.run([sys.executable, "-c", "import flops_fit as ff; print(sorted(ff.__all__)[:3]); ff.nope"],
                         capture_output=True, text=True, timeout=120)
    assert "has no attribute 'nope'" in out.stderr
