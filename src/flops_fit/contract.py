"""The model contract, checked on a probe instance before any expensive work.

A model is anything callable with the size parameter as a keyword that
returns an object with `num_params() -> int`. Failures name the class, the
parameter, what was expected and what was found.
"""

from __future__ import annotations

import contextlib
import inspect
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

_ALTERNATIVES = (
    "count_parameters", "count_params", "n_params", "get_num_params", "num_parameters",
    "number_of_parameters", "param_count", "parameter_count",
)


@dataclass
class ModelContract:
    """The model to sweep: how to build and count it, which argument sets its size, what is held fixed."""

    factory: Callable[..., Any]
    size_param: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    architecture: str | None = None  # registry name; None for a user's class or factory
    objective: str | None = None  # causal_lm, masked_lm, ... (a registered model decides)

    def build(self, size_value: int, *, meta: bool = False) -> Any:
        kwargs = {**self.model_kwargs, self.size_param: size_value}
        if meta:
            try:
                import torch

                with torch.device("meta"):
                    return self.factory(**kwargs)
            except Exception:  # noqa: BLE001 - not every model can be built on the meta device
                pass
        return self.factory(**kwargs)

    def count_params(self, size_value: int, non_embedding: bool = False) -> int:
        """num_params() of the model at this size, built without allocating weights where possible;
        `non_embedding`: num_params(non_embedding=True), the count without embeddings."""
        try:
            model = self.build(size_value, meta=True)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(
                f"model_cls: {self.name}({self.size_param}={size_value}) raised "
                f"{type(exc).__name__}: {exc}. Restrict the sizes the planner may try with "
                "size_min / size_max / size_multiple / size_values."
            ) from exc
        return _checked_count(model, self.name, self.size_param, size_value, non_embedding)

    def check_non_embedding(self, probe_size: int) -> None:
        """Refuse param_count='non_embedding' for a model that cannot say which parameters are embeddings."""
        model = self.build(probe_size, meta=True)
        fn = getattr(model, "num_params", None)
        try:
            takes = "non_embedding" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes = False
        if not takes:
            raise TypeError(
                f"param_count: 'non_embedding' needs the model to say which parameters are embeddings, but "
                f"{self.name}.num_params() takes no non_embedding argument; give it "
                "`num_params(self, non_embedding=False)` (built-in and Hugging Face models have one), or use "
                "param_count='all'")
        n1 = self.count_params(probe_size, non_embedding=True)
        n2 = self.count_params(probe_size * 2, non_embedding=True)
        if n2 <= n1:
            raise ValueError(
                f"param_count: {self.name}.num_params(non_embedding=True) must grow with {self.size_param!r}; "
                f"found {n1:,} at {self.size_param}={probe_size} and {n2:,} at {self.size_param}={probe_size * 2}")


def model_name(factory: Any) -> str:
    return getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None) or repr(factory)


def _checked_count(model: Any, name: str, size_param: str, value: int, non_embedding: bool = False) -> int:
    where = f"{name}({size_param}={value})"
    fn = getattr(model, "num_params", None)
    if fn is None:
        alts = [a for a in _ALTERNATIVES if callable(getattr(model, a, None))]
        hint = (
            f"it has {alts[0]}() instead; rename it or add num_params() that returns it"
            if alts
            else "add `def num_params(self) -> int: return sum(p.numel() for p in self.parameters())`"
            if hasattr(model, "parameters")
            else "add a num_params() method that returns the parameter count"
        )
        raise TypeError(
            f"model_cls: instances of {name} must have a num_params() method returning an int; "
            f"{where} has none ({hint})"
        )
    if not callable(fn):
        raise TypeError(
            f"model_cls: {where}.num_params must be a method returning an int, found a "
            f"{type(fn).__name__} attribute ({fn!r})"
        )
    n = fn(non_embedding=True) if non_embedding else fn()
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(
            f"model_cls: {where}.num_params() must return an int, found {type(n).__name__} ({n!r})"
        )
    if n <= 0:
        raise ValueError(f"model_cls: {where}.num_params() must be > 0, found {n}")
    return int(n)


def _is_module_instance(obj: Any) -> bool:
    try:
        import torch

        return isinstance(obj, torch.nn.Module)
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def check_model(
    model_cls: Any,
    model_size_param: Any,
    model_kwargs: dict[str, Any] | None,
    probe_size: int,
) -> ModelContract:
    """Validate the model contract on a probe instance; returns the checked contract."""
    if _is_module_instance(model_cls):
        raise TypeError(
            f"model_cls: expected a model class or a factory (a callable taking the size parameter), found an "
            f"instance of {type(model_cls).__name__}; a sweep builds a new model for every size, so pass the class "
            f"itself ({type(model_cls).__name__}) or a function that builds one"
        )
    if model_cls is None or not callable(model_cls):
        raise TypeError(
            f"model_cls: expected a model class or factory callable, found {type(model_cls).__name__} "
            f"({model_cls!r})"
        )
    name = model_name(model_cls)
    if not isinstance(model_size_param, str) or not model_size_param.isidentifier():
        raise TypeError(
            f"model_size_param: expected the name of {name}'s size argument as a string, "
            f"found {model_size_param!r}"
        )
    if model_kwargs is None:
        model_kwargs = {}
    if not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs: expected a dict of constructor arguments, found {type(model_kwargs).__name__}")
    kwargs = dict(model_kwargs)
    if model_size_param in kwargs:
        warnings.warn(
            f"model_kwargs: {model_size_param!r} is the size parameter, set by the planner for every "
            f"experiment; ignoring model_kwargs[{model_size_param!r}]={kwargs[model_size_param]!r}",
            UserWarning,
            stacklevel=3,
        )
        kwargs.pop(model_size_param)

    sig = None
    with contextlib.suppress(TypeError, ValueError):
        sig = inspect.signature(model_cls)
    if sig is not None:
        params = sig.parameters
        takes_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        keywordable = [
            k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if not takes_var_kw:
            if model_size_param not in keywordable:
                raise TypeError(
                    f"model_size_param: {name} does not accept {model_size_param!r} as a keyword argument; "
                    f"its arguments are ({', '.join(keywordable) or 'none'})"
                )
            unknown = [k for k in kwargs if k not in keywordable]
            if unknown:
                raise TypeError(
                    f"model_kwargs: {name} does not accept {unknown[0]!r}; its arguments are "
                    f"({', '.join(keywordable)})"
                )

    contract = ModelContract(model_cls, model_size_param, kwargs, name)
    try:
        probe = contract.build(probe_size)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"model_cls: building the probe {name}({model_size_param}={probe_size}"
            f"{''.join(f', {k}={v!r}' for k, v in kwargs.items())}) raised {type(exc).__name__}: {exc}. "
            "Pass probe_size (or size_min / size_multiple) with a size value the model accepts."
        ) from exc
    n1 = _checked_count(probe, name, model_size_param, probe_size)
    n2 = contract.count_params(probe_size * 2)
    if n2 <= n1:
        raise ValueError(
            f"model_size_param: {name}.num_params() must grow with {model_size_param!r}; found "
            f"{n1:,} at {model_size_param}={probe_size} and {n2:,} at {model_size_param}={probe_size * 2}"
        )
    return contract
