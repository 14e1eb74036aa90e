"""design='branches': one constant-LR trunk per size, every point a WSD cooldown branch forked from it.

A branch must be exactly the WSD run of its own length (same warmup, data, RNG and LR at every step), for
about half the compute of separate runs when sizes repeat across budgets; and a killed branched sweep must
resume its trunk and never train a branch twice."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from ff_proc_helpers import kill_script_when
from ff_train_helpers import TinyLM, TokenData, lm_loss

import flops_fit as ff

HERE = Path(__file__).parent
# 3 sizes at each of 4 budgets: each size has 4 points, so its trunk is shared 4 ways
KW = dict(compute_budgets=[1e7, 1.5e7, 2e7, 2.5e7], size_values=[4, 8, 16], num_model_sizes=3, span_decades=0.4,
          train_config={"batch_size": 8, "val_units": 256, "progress": False, "num_threads": 1}, progress=False,
          n_bootstrap=0, workers=1)


def _sweep(out: Path, **extra):
    kw = {**KW, **extra}
    return ff.find_optimal(TinyLM, "d_model", dataset=TokenData(2000), loss_fn=lm_loss, output_dir=out, **kw)


@pytest.fixture(scope="module")
def three_designs(tmp_path_factory):
    root = tmp_path_factory.mktemp("designs")
    with pytest.warns(UserWarning):  # the tiny LM's measured FLOPs are ~0.5x its 6·N (warned, not our subject)
        br = _sweep(root / "branches", design="branches")
    wsd = _sweep(root / "wsd", train_config={**KW["train_config"], "schedule": "wsd"})
    cos = _sweep(root / "cosine")
    return root, br, wsd, cos


def test_a_branch_is_exactly_the_wsd_run_of_its_own_length(three_designs):
    _, br, wsd, _ = three_designs
    same = {r.experiment_id: r for r in wsd.records}
    exact = 0
    for r in br.records:
        other = same[r.experiment_id]
        assert r.num_tokens == other.num_tokens and r.details["units_trained"] == other.details["units_trained"]
        if r.details["train_config"]["warmup_steps"] == other.details["train_config"]["warmup_steps"]:
            assert r.final_loss == other.final_loss  # bit for bit: the trunk's steps are the run's own steps
            exact += 1
    assert exact >= 8  # d_model 4 and 8 (their shortest run's warmup is every run's); 16 warms up for fewer steps
    assert all(r.details["train_config"]["schedule"].endswith("(WSD)") for r in br.records)


def test_branches_cost_about_half_of_separate_runs_and_say_so(three_designs):
    root, br, _, cos = three_designs
    design = br.plan.design
    fl = design["flops"]
    assert fl["ratio"] <= 0.65 and fl["separate_runs"] == pytest.approx(br.plan.total_flops)
    spent = sum(r.details["branch_flops"] for r in br.records) + sum(
        t["units"] * 6 * t["num_params"] for t in design["trunks"].values())
    assert spent == pytest.approx(fl["total"], rel=1e-9)
    assert f"×{fl['ratio']:.2f} of the" in br.plan.summary()
    for r in br.records:
        b = design["branches"][r.experiment_id]
        assert r.details["trunk_id"] == b["trunk_id"] and r.details["forked_at_step"] == b["fork_step"]
        assert 0 < r.details["branch_units"] <= 0.25 * r.num_tokens + 8 * 8  # the cooldown: ~20% (+ one step)
    paid = [r for r in br.records if "trunk_trained_to_step" in r.details]
    assert sorted(r.details["trunk_id"] for r in paid) == sorted(design["trunks"])  # each trunk trained once
    saved = json.loads((root / "branches" / "sweep.json").read_text())
    assert saved["design"]["flops"]["ratio"] == pytest.approx(fl["ratio"])
    assert saved["run_settings"]["design"] == "branches" and saved["run_settings"]["train_config"]["schedule"] == "wsd"
    assert not any((root / "branches" / "checkpoints").glob("trunk-*"))  # trunks removed once every branch is in
    # against separate cosine runs: the WSD branches are never worse (on runs this short they are better)
    cc = {r.experiment_id: r.final_loss for r in cos.records}
    rel = [r.final_loss / cc[r.experiment_id] - 1 for r in br.records]
    assert statistics.median(rel) < 0.02, rel
    assert br.plan.fingerprint() != cos.plan.fingerprint()


def test_the_mock_engine_accounts_a_branched_design(tmp_path):
    common = dict(mode="mock", compute_budgets=[1e18, 3e18, 1e19], num_model_sizes=5, n_bootstrap=0,
                  model_kwargs={"n_layers": 4}, size_multiple=64)
    sep = ff.find_optimal("gpt", output_dir=tmp_path / "sep", align_sizes=True, **common)  # the same points
    br = ff.find_optimal("gpt", output_dir=tmp_path / "br", design="branches", **common)
    assert [r.final_loss for r in br.records] == [r.final_loss for r in sep.records]
    design = br.plan.design
    assert design["units_per_step"] is None and 0.3 < design["flops"]["ratio"] < 1
    for r in br.records:
        assert r.details["forked_at_units"] == pytest.approx(0.8 * r.num_tokens)


def test_bad_designs_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"design: expected one of .*'separate'.*'branches'.*found 'trees'"):
        ff.find_optimal("gpt", mode="mock", compute_budgets=[1e18, 1e19], design="trees", output_dir=tmp_path,
                        train=False)
    with pytest.raises(ValueError, match="design: 'branches' forks the built-in trainer's runs"):
        ff.find_optimal(TinyLM, "d_model", dataset=TokenData(64), loss_fn=lm_loss, compute_budgets=[1e7, 2e7],
                        design="branches", train_fn=lambda model, exp, ctx: 1.0, output_dir=tmp_path, train=False)


def test_a_tampered_design_in_sweep_json_is_refused(tmp_path):
    ff.find_optimal("gpt", mode="mock", compute_budgets=[1e18, 3e18, 1e19], design="branches", output_dir=tmp_path,
                    train=False, model_kwargs={"n_layers": 4})
    path = tmp_path / "sweep.json"
    data = json.loads(path.read_text())
    tid = next(iter(data["design"]["trunks"]))
    data["design"]["trunks"]["../../evil"] = data["design"]["trunks"].pop(tid)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"sweep.json: field 'design'.trunks key"):
        ff.SweepPlan.load(str(path))


def test_a_killed_branched_sweep_resumes_its_trunk_and_trains_each_branch_once(tmp_path):
    script = HERE / "branch_script_for_kill.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    ref = subprocess.run([sys.executable, str(script), str(tmp_path / "ref")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert ref.returncode == 0, ref.stdout[-2000:] + ref.stderr[-2000:]

    out = tmp_path / "killed"
    gate = out / "checkpoints" / "trunk-d_model4" / "state.json"  # the longest trunk's mid-trunk checkpoint
    kill_script_when(script, out, gate.exists, "a trunk checkpoint")
    done = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    starts = (out / "starts.log").read_text().split()
    ends = [s for s in (out / "ends.log").read_text().split()]
    final = {r["experiment_id"]: r for r in json.loads((out / "results.json").read_text())["records"]}
    reference = {r["experiment_id"]: r for r in json.loads((tmp_path / "ref" / "results.json").read_text())["records"]}
    assert sorted(final) == sorted(reference) and sorted(ends) == sorted(final)  # every branch finished exactly once
    assert len(starts) >= len(final)
    resumed = [r for r in final.values() if r["details"].get("trunk_trained_from_step", 0) > 0]
    assert [r["details"]["trunk_id"] for r in resumed] == ["trunk-d_model4"]  # the trunk went on from its checkpoint
    for eid, r in final.items():
        assert r["final_loss"] == reference[eid]["final_loss"], eid  # the kill changed no answer


def test_the_cli_plans_the_same_design(tmp_path):
    sys.path.insert(0, str(HERE.parent / "cli"))
    from ff_cli_helpers import MOCK_SMALL, error_line
    from ff_cli_helpers import ff as ff_cli

    proc = ff_cli("run", *MOCK_SMALL, "design=branches", "output_dir=br", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "br" / "sweep.json").read_text())
    assert saved["run_settings"]["design"] == "branches" and saved["design"]["flops"]["ratio"] < 1
    assert "design: " in proc.stdout and "WSD cooldown branch(es)" in proc.stdout
    bad = ff_cli("plan", *MOCK_SMALL, "design=tree", "output_dir=x", cwd=tmp_path)
    assert "design: expected one of" in error_line(bad)
    extra = ff_cli("plan", *MOCK_SMALL, "design=branches", "extra_branches=1", "output_dir=bx", cwd=tmp_path)
    assert extra.returncode == 0, extra.stderr
    saved = json.loads((tmp_path / "bx" / "sweep.json").read_text())
    n_extra = sum(e["extra"] for e in saved["experiments"])
    assert n_extra > 0 and saved["run_settings"]["extra_branches"] == 1
    assert f"{n_extra} of them extra branches between budgets" in extra.stdout


def test_an_adaptive_branched_sweep_forks_later_rounds_from_the_same_trunks(tmp_path):
    """Adaptive rounds add points to sizes whose trunks already ran: a trunk goes on from its last state (or
    from the last snapshot before a new, earlier fork), and every branch still equals the WSD run of its length."""
    kw = {**KW, "compute_budgets": [1e7, 1.5e7, 2e7, 2.5e7]}
    with pytest.warns(UserWarning):
        ad = _sweep(tmp_path / "ad", design="branches", adaptive=True)
    design, rounds = ad.plan.design, ad.plan.adaptive["rounds"]
    assert [r["kind"] for r in rounds if r["kind"] == "budget"] == ["budget"] * 4
    assert set(design["branches"]) == {r.experiment_id for r in ad.records} and all(r.ok for r in ad.records)
    shared = [t for t in design["trunks"].values() if len(t["branches"]) > 1]
    assert shared  # sizes repeat across rounds: their trunks serve several rounds' points
    wsd = ff.find_optimal(TinyLM, "d_model", dataset=TokenData(2000), loss_fn=lm_loss, output_dir=tmp_path / "w",
                          **{**kw, "train_config": {**KW["train_config"], "schedule": "wsd"},
                             "size_values": sorted({r.size_value for r in ad.records}), "num_model_sizes": 3})
    same = {r.experiment_id: r for r in wsd.records}
    exact = [r for r in ad.records if r.experiment_id in same and r.details["train_config"]["warmup_steps"] ==
             same[r.experiment_id].details["train_config"]["warmup_steps"]]
    assert all(r.final_loss == same[r.experiment_id].final_loss for r in exact)


def test_extra_branches_train_from_the_same_trunks_for_their_cooldown_alone(tmp_path):
    """extra_branches=1 on real training: one more branch in each of a size's 3 gaps, forked from the trunk the
    size trains anyway (the same trunk lengths, each trained once); Approach 2 sees the 4 budgets only."""
    with pytest.warns(UserWarning):
        r = _sweep(tmp_path / "x", design="branches", extra_branches=1)
    design = r.plan.design
    extra = {e.experiment_id: e for e in r.plan.experiments if e.extra}
    assert len(extra) == 9 and {x.experiment_id for x in r.records} >= set(extra) and all(x.ok for x in r.records)
    longest = {}
    for e in r.plan.experiments:
        if not e.extra:
            longest[e.size_value] = max(longest.get(e.size_value, 0), e.num_tokens)
    for x in r.records:
        if x.experiment_id in extra:
            b = design["branches"][x.experiment_id]
            assert b["extra"] and x.details["trunk_id"] == b["trunk_id"]
            assert 0 < x.details["branch_units"] <= 0.25 * x.num_tokens + 8 * 8  # its cooldown
            assert x.num_tokens < longest[x.size_value]
            assert x.final_loss < x.details["initial_loss"]
    paid = [x for x in r.records if "trunk_trained_to_step" in x.details]
    assert sorted(x.details["trunk_id"] for x in paid) == sorted(design["trunks"])  # each trunk once, extras or not
    assert [o.compute_budget for o in r.analysis.isoflop.optima] == KW["compute_budgets"]
    assert r.analysis.parametric.n_points + len(r.analysis.parametric.excluded) == len(r.records)
