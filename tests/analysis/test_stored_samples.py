"""Result.load reuses the bootstrap samples stored in scaling_laws.json, and only when they are the right ones."""

import json

import pytest

import flops_fit as ff
import flops_fit.analysis as fa


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, toy_model_cls):
    out = tmp_path_factory.mktemp("stored")
    r = ff.find_optimal(toy_model_cls, "d_model", mode="mock", output_dir=out, progress=False,
                        compute_budgets=[1e15, 1e16, 1e17], num_model_sizes=5, n_bootstrap=200)
    return out, r


class Toy:
    def __init__(self, d_model: int) -> None:
        self.d_model = d_model

    def num_params(self) -> int:
        return 12 * 4 * self.d_model**2 + 256 * self.d_model


@pytest.fixture(scope="module")
def toy_model_cls():
    return Toy


def _count_refits(monkeypatch):
    calls = {"a3": 0, "a2": 0}
    real3, real2 = fa.bootstrap_parametric, fa.bootstrap_isoflop

    def b3(*a, **k):
        calls["a3"] += 1
        return real3(*a, **k)

    def b2(*a, **k):
        calls["a2"] += 1
        return real2(*a, **k)

    monkeypatch.setattr(fa, "bootstrap_parametric", b3)
    monkeypatch.setattr(fa, "bootstrap_isoflop", b2)
    return calls


def test_load_reuses_the_stored_samples_and_gives_the_same_answer(sweep, monkeypatch):
    out, first = sweep
    calls = _count_refits(monkeypatch)
    again = ff.Result.load(out)
    assert calls == {"a3": 0, "a2": 0}  # nothing resampled
    assert again.chinchilla_table() == first.chinchilla_table()
    assert again.analysis.bootstrap.interval("a") == first.analysis.bootstrap.interval("a")
    assert again.analysis.isoflop_bootstrap.n_exponent.tolist() == first.analysis.isoflop_bootstrap.n_exponent.tolist()


def test_other_options_draw_new_samples(sweep, monkeypatch):
    out, _ = sweep
    calls = _count_refits(monkeypatch)
    r = ff.Result.load(out, n_bootstrap=50)
    assert calls == {"a3": 1, "a2": 1} and r.analysis.bootstrap.n_resamples == 50
    ff.Result.load(out, reanalyze=True)
    assert calls == {"a3": 2, "a2": 2}


@pytest.mark.parametrize("tamper", [
    lambda s: s["approach_3"].__setitem__("fit", [0.0, 0.0, 0.0, 0.5, 0.5]),  # samples of another fit
    lambda s: s["approach_3"].__setitem__("samples", "not a list"),
    lambda s: s["approach_3"].__setitem__("samples", [[1.0] * 7]),  # wrong width
    lambda s: s["approach_3"].__setitem__("n_resamples", -3),
    lambda s: s["approach_2"].__setitem__("n_exponent", [None] * len(s["approach_2"]["n_exponent"])),
    lambda s: s["approach_2"].__setitem__("budgets", [1.0, 2.0, 3.0]),
    lambda s: s.__setitem__("key", "0" * 64),  # samples of other runs
])
def test_a_tampered_or_foreign_sample_set_is_ignored_and_redrawn(sweep, tmp_path, monkeypatch, tamper):
    import shutil

    out, first = sweep
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    path = copy / "analysis" / "scaling_laws.json"
    data = json.loads(path.read_text())
    tamper(data["bootstrap_samples"])
    path.write_text(json.dumps(data))
    calls = _count_refits(monkeypatch)
    r = ff.Result.load(copy)
    assert calls["a3"] + calls["a2"] >= 1  # what did not fit was drawn again ...
    assert r.chinchilla_table() == first.chinchilla_table()  # ... and, seeded, gives the same numbers
