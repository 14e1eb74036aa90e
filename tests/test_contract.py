
import pytest

import flops_fit as ff
from flops_fit.contract import check_model


class CountsDifferently:
    def __init__(self, d_model: int) -> None:
        self.d = d_model

    def count_parameters(self) -> int:
        return self.d * self.d


class FloatCount:
    def __init__(self, d_model: int) -> None:
        self.d = d_model

    def num_params(self):
        return float(self.d)


class ZeroCount:
    def __init__(self, d_model: int) -> None:
        pass

    def num_params(self) -> int:
        return 0


class Constant:
    def __init__(self, d_model: int) -> None:
        pass

    def num_params(self) -> int:
        return 1000


class Picky:
    def __init__(self, d_model: int) -> None:
        if d_model % 16:
            raise ValueError("d_model must be a multiple of 16")
        self.d = d_model

    def num_params(self) -> int:
        return self.d**2


def test_not_callable():
    with pytest.raises(TypeError, match=r"model_cls: expected a model class or factory callable, found int"):
        check_model(3, "d_model", None, 8)


def test_size_param_must_be_a_name(toy_model):
    with pytest.raises(TypeError, match=r"model_size_param: expected the name of ToyModel's size argument.*found 5"):
        check_model(toy_model, 5, None, 8)


def test_constructor_without_size_param(toy_model):
    with pytest.raises(TypeError, match=r"model_size_param: ToyModel does not accept 'width'.*d_model, n_layers, vocab"):
        check_model(toy_model, "width", None, 8)


def test_count_parameters_instead_of_num_params_is_told_so():
    with pytest.raises(TypeError, match=r"CountsDifferently.*num_params\(\).*has count_parameters\(\) instead"):
        check_model(CountsDifferently, "d_model", None, 8)


def test_num_params_must_return_positive_int():
    with pytest.raises(TypeError, match=r"FloatCount\(d_model=8\)\.num_params\(\) must return an int, found float \(8.0\)"):
        check_model(FloatCount, "d_model", None, 8)
    with pytest.raises(ValueError, match=r"ZeroCount\(d_model=8\)\.num_params\(\) must be > 0, found 0"):
        check_model(ZeroCount, "d_model", None, 8)


def test_num_params_must_grow_with_size():
    with pytest.raises(ValueError, match=r"model_size_param: Constant.num_params\(\) must grow with 'd_model'; found 1,000 at d_model=8 and 1,000 at d_model=16"):
        check_model(Constant, "d_model", None, 8)


def test_size_param_in_kwargs_warns_and_is_dropped(toy_model):
    with pytest.warns(UserWarning, match=r"model_kwargs: 'd_model' is the size parameter.*ignoring model_kwargs\['d_model'\]=512"):
        c = check_model(toy_model, "d_model", {"d_model": 512, "n_layers": 2}, 8)
    assert c.model_kwargs == {"n_layers": 2}


def test_unknown_kwarg(toy_model):
    with pytest.raises(TypeError, match=r"model_kwargs: ToyModel does not accept 'n_heads'"):
        check_model(toy_model, "d_model", {"n_heads": 2}, 8)


def test_probe_that_raises_names_value_and_hint():
    with pytest.raises(ValueError, match=r"building the probe Picky\(d_model=8\) raised ValueError: d_model must be a multiple of 16.*probe_size"):
        check_model(Picky, "d_model", None, 8)
    assert check_model(Picky, "d_model", None, 16).count_params(32) == 1024


def test_factory_function_is_accepted(toy_model):
    def factory(width: int):
        return toy_model(d_model=width, n_layers=2)

    c = check_model(factory, "width", None, 8)
    assert c.count_params(8) == toy_model(8, 2).num_params()


def test_find_optimal_checks_contract_before_anything(tmp_path):
    with pytest.raises(TypeError, match="count_parameters"):
        ff.find_optimal(CountsDifferently, "d_model", compute_budgets=[1e15, 1e16], mode="mock",
                        output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists(), "nothing may be written before the contract passes"


def test_find_optimal_argument_errors(tmp_path, toy_model):
    with pytest.raises(ValueError, match=r"mode: expected one of 'local', 'mock', found 'fast'"):
        ff.find_optimal(toy_model, "d_model", compute_budgets=[1e15], mode="fast")
    with pytest.raises(TypeError, match="mock_law: expected a flops_fit.MockLaw, found dict"):
        ff.find_optimal(toy_model, "d_model", compute_budgets=[1e15], mode="mock", mock_law={"E": 1})
    with pytest.raises(ValueError, match="MockLaw.noise: expected a finite number >= 0, found -0.1"):
        ff.MockLaw(noise=-0.1)
