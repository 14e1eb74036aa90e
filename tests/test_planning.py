import math

import numpy as np
import pytest

from flops_fit.planning import PlanSettings, SweepPlan, make_budgets, plan_sweep


def count(d: int) -> int:
    return 48 * d * d + 256 * d


def test_geometric_budgets_hit_both_ends():
    b = make_budgets(min_flops=1e17, max_flops=1e21, num_budgets=5)
    assert b[0] == 1e17 and b[-1] == 1e21
    assert np.allclose(np.diff(np.log10(b)), 1.0)


@pytest.mark.parametrize(
    "budgets, msg",
    [
        ([1e18, -1.0], r"compute_budgets\[1\]: expected a positive finite number of FLOPs, found -1.0"),
        ([1e18, float("nan")], r"compute_budgets\[1\].*found nan"),
        ([1e18, float("inf")], r"compute_budgets\[1\].*found inf"),
        ([1e18, 1e18], r"compute_budgets: expected distinct budgets, found duplicates \[1e\+18\]"),
        ([], "expected at least one budget"),
        (["lots"], r"compute_budgets\[0\]: expected a positive number of FLOPs, found 'lots'"),
    ],
)
def test_bad_budgets_are_named(budgets, msg):
    with pytest.raises(ValueError, match=msg):
        make_budgets(budgets)


def test_min_max_errors():
    with pytest.raises(ValueError, match="max_flops: expected >= min_flops"):
        make_budgets(min_flops=1e20, max_flops=1e18)
    with pytest.raises(ValueError, match="compute_budgets: expected a list of FLOP budgets or min_flops and max_flops"):
        make_budgets()
    with pytest.raises(ValueError, match="num_budgets: expected a positive integer, found 0"):
        make_budgets(min_flops=1e17, max_flops=1e18, num_budgets=0)


def test_sizes_span_two_decades_around_centre_and_compute_is_exact():
    plan = plan_sweep([1e18], count, size_param="d", model_name="toy", settings=PlanSettings(size_max=1 << 20))
    n = np.array([e.num_params for e in plan.experiments])
    assert len(n) == 7
    centre = math.sqrt(1e18 / 120)
    assert np.log10(n.min() / centre) == pytest.approx(-1, abs=0.02)
    assert np.log10(n.max() / centre) == pytest.approx(1, abs=0.02)
    assert np.allclose(np.diff(np.log10(n)), 1 / 3, atol=0.02)  # evenly spaced in log N
    for e in plan.experiments:
        assert 6 * e.num_params * e.num_tokens == pytest.approx(e.compute_budget, rel=1e-12)
        assert e.num_params == count(e.size_value)


def test_size_multiple_and_duplicates_dropped():
    plan = plan_sweep([1e12], count, size_param="d", model_name="toy",
                      settings=PlanSettings(size_multiple=64, num_model_sizes=9))
    vals = [e.size_value for e in plan.experiments]
    assert all(v % 64 == 0 for v in vals)
    assert len(vals) == len(set(vals)) < 9  # a coarse grid cannot give 9 distinct sizes here


def test_explicit_size_values_only():
    allowed = [32, 64, 128, 256, 512]
    plan = plan_sweep([1e16], count, size_param="d", model_name="toy",
                      settings=PlanSettings(size_values=allowed))
    assert {e.size_value for e in plan.experiments} <= set(allowed)


def test_too_few_steps_and_unreachable_sizes_are_flagged_not_dropped():
    s = PlanSettings(units_per_step=4096, min_steps=20, size_max=64)
    plan = plan_sweep([1e12], count, size_param="d", model_name="toy", settings=s)
    flagged = [e for e in plan.experiments if e.flagged]
    assert flagged, "expected flagged experiments"
    reasons = " ".join(e.flag_reason for e in flagged)
    assert "optimizer steps" in reasons or "outside what d" in reasons
    assert all(e.flag_reason for e in flagged)
    assert plan.total_flops == pytest.approx(sum(e.flops for e in plan.experiments if not e.flagged))


def test_plan_roundtrip_and_fingerprint(tmp_path):
    plan = plan_sweep([1e16, 1e17], count, size_param="d", model_name="toy")
    plan.save(tmp_path / "sweep.json")
    back = SweepPlan.load(tmp_path / "sweep.json")
    assert back.fingerprint() == plan.fingerprint()
    assert back.to_dataframe().equals(plan.to_dataframe())
    other = plan_sweep([1e16, 1e18], count, size_param="d", model_name="toy")
    assert other.fingerprint() != plan.fingerprint()


def test_malformed_sweep_file_names_field(tmp_path):
    (tmp_path / "sweep.json").write_text('{"schema": 1, "kind": "flops-fit/sweep", "size_param": "d"}')
    with pytest.raises(ValueError, match=r"sweep.json: required field 'model_name' is missing"):
        SweepPlan.load(tmp_path / "sweep.json")
    (tmp_path / "sweep.json").write_text('{"schema": 99, "kind": "flops-fit/sweep"}')
    with pytest.raises(ValueError, match=r"field 'schema': expected 1"):
        SweepPlan.load(tmp_path / "sweep.json")


def test_reachable_target_wins_over_unreachable_duplicate():
    # size_min=40 makes the three smallest targets unreachable; they and the 4th (reachable) all map to d=40
    plan = plan_sweep([1e12], count, size_param="d", model_name="toy",
                      settings=PlanSettings(size_min=40, size_multiple=8))
    at_min = [e for e in plan.experiments if e.size_value == 40]
    assert len(at_min) == 1
    assert not at_min[0].flagged, at_min[0].flag_reason
    assert at_min[0].target_params == pytest.approx(math.sqrt(1e12 / 120), rel=1e-9)


def test_size_search_is_exact_and_cheap():
    calls = []

    def counting(d: int) -> int:
        calls.append(d)
        return count(d)

    plan = plan_sweep([1e15, 1e17, 1e19], counting, size_param="d", model_name="toy",
                      settings=PlanSettings(size_max=1 << 20))
    for e in plan.experiments:  # the chosen size is the closest in log N among its neighbours
        err = abs(math.log(e.num_params / e.target_params))
        assert err <= abs(math.log(count(e.size_value + 1) / e.target_params)) + 1e-12
        assert err <= abs(math.log(count(e.size_value - 1) / e.target_params)) + 1e-12
    assert len(set(calls)) < 120  # interpolation search, not ~20 bisection steps per target


def test_a_size_parameter_with_only_4_values_is_refused_before_training():
    """The issue's case: a size parameter that can take 4 values across the whole sweep."""
    from flops_fit.planning import check_trainable, plan_problems

    s = PlanSettings(num_model_sizes=5, span_decades=1.0, size_values=[8, 16, 32, 64])
    plan = plan_sweep([1e12, 1e13, 1e14], count, size_param="d", model_name="toy", settings=s)
    assert plan.dropped  # collisions are listed with their reason ...
    assert all("maps to d=" in d["reason"] and "cannot resolve both" in d["reason"] for d in plan.dropped)
    assert "planned size(s) not kept" in plan.summary() and "REFUSED (would not train)" in plan.summary()
    with pytest.raises(ValueError, match=r"compute_budgets: every budget needs 3 or more distinct runnable model "
                                         r"sizes .* C=1e\+1\d: \d size\(s\) .*a finer size grid"):
        check_trainable(plan)  # ... and the plan is refused
    ok = plan_sweep([1e12, 1e13], count, size_param="d", model_name="toy",
                    settings=PlanSettings(num_model_sizes=5, span_decades=1.0))
    assert plan_problems(ok) == []
    back = SweepPlan.from_dict(plan.to_dict())
    assert back.dropped == plan.dropped and back.fingerprint() == plan.fingerprint()


def test_hf_config_model_whose_sizes_collide_is_refused(tmp_path):
    """An HF-config model swept over hidden_size in steps of its head count: sizes collide, the sweep is refused."""
    pytest.importorskip("transformers")
    from transformers import LlamaConfig, LlamaForCausalLM

    import flops_fit as ff

    def llama(hidden_size: int):
        m = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4))
        m.num_params = m.num_parameters
        return m

    with pytest.raises(ValueError, match=r"every budget needs 3 or more distinct runnable model sizes"):
        ff.find_optimal(llama, "hidden_size", compute_budgets=[3e12, 1e13], num_model_sizes=7, span_decades=0.15,
                        size_multiple=64, size_min=64, size_max=256, mode="mock", output_dir=tmp_path)
    assert not (tmp_path / "results.json").exists()
