"""Turn anyone's scaling data into one validated table for the fits.

Accepts a pandas DataFrame, a CSV file, or a JSON file (a sweep's
``results.json`` or a plain list of records) and maps user column names onto
the canonical ones the analysis uses: ``N`` (parameters), ``D`` (tokens or
data units), ``loss``, and, when present, ``C`` (training FLOPs), ``budget``
(the budget a run was planned for), ``status`` and ``initial_loss``.

Bad inputs fail here, at the door, with messages that name the column, the
first offending row and its value.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Other names that the default column names also answer to (first match wins).
#: They cover flops-fit's own ``results.json`` records and common spellings.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "N": ("num_params", "n_params", "params", "parameters", "model_size", "Model Size"),
    "D": ("num_tokens", "n_tokens", "tokens", "data_size"),
    "loss": ("final_loss", "eval_loss", "val_loss", "valid_loss", "test_loss"),
    "C": ("flops", "compute", "training_flops", "Training FLOP"),
    "budget": ("compute_budget", "planned_budget"),
    "status": ("state",),
    "initial_loss": ("init_loss", "loss_at_init"),
}

#: Top-level keys under which a JSON file may hold its list of records.
_RECORD_KEYS = ("results", "experiments", "records", "runs", "data")

REFERENCE_CHINCHILLA = "chinchilla_epoch_svg_extracted.csv"
REFERENCE_LLAMA3 = "llama3_isoflops_points.csv"
#: Llama 3's published compute-optimal fit (arXiv:2407.21783, section 3.2.1): D*(C) = 0.29·C^0.53 tokens,
#: and the flagship allocation it gave: 402B parameters on 16.55T tokens at 3.8e25 FLOPs.
LLAMA3_PUBLISHED = {"D_coefficient": 0.29, "D_exponent": 0.53, "compute": 3.8e25, "N_opt": 402e9, "D_opt": 16.55e12}


@dataclass(frozen=True)
class FitData:
    """Validated data for a fit.

    ``frame`` has the canonical columns ``N``, ``D``, ``loss`` and, when the input
    had them, ``C``, ``budget``, ``status``, ``initial_loss``; its index holds the
    input's row labels, so exclusions can be reported against the user's rows.
    ``columns`` maps each canonical name to the input column it came from
    (``"D"`` maps to ``"C/(6N)"`` when tokens were derived from FLOPs).
    """

    frame: pd.DataFrame
    source: str
    columns: dict[str, str] = field(default_factory=dict)


def read_table(data: Any, *, argname: str = "data") -> tuple[pd.DataFrame, str]:
    """Read a DataFrame, CSV path or JSON path into a DataFrame (copied) and a source label."""
    if isinstance(data, pd.DataFrame):
        return data.copy(), "DataFrame"
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"{argname}: file not found: {path}")
        suffix = path.suffix.lower()
        if suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            try:
                return pd.read_csv(path, sep=sep), str(path)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}: could not be read as CSV ({exc})") from None
        if suffix == ".json":
            return _read_json_records(path), str(path)
        raise ValueError(
            f"{argname}: expected a .csv, .tsv or .json file, found {path.name!r} "
            "(pass a pandas DataFrame for other formats)"
        )
    raise TypeError(
        f"{argname}: expected a pandas DataFrame or a path to a CSV/JSON file, "
        f"found {type(data).__name__}"
    )


def _read_json_records(path: Path) -> pd.DataFrame:
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    records = raw
    if isinstance(raw, dict):
        for key in _RECORD_KEYS:
            if isinstance(raw.get(key), list):
                records = raw[key]
                break
        else:
            raise ValueError(
                f"{path}: expected a list of records, or an object with one of the fields "
                f"{list(_RECORD_KEYS)} holding a list; found fields {sorted(raw)[:12]}"
            )
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a list of JSON objects (one per experiment)")
    if not records:
        raise ValueError(f"{path}: holds no records")
    frame = pd.json_normalize(records)
    if "experiment_id" in frame.columns and frame["experiment_id"].is_unique:
        frame = frame.set_index("experiment_id", drop=False)
        frame.index.name = None
    return frame


def _find_column(frame: pd.DataFrame, name: str | None, canonical: str, default: str | None) -> str | None:
    """The input column for `canonical`: the given name, else (for defaults) a known alias."""
    if name is None:
        return None
    if name in frame.columns:
        return name
    if name != default:  # the caller named a column explicitly: no guessing
        return None
    for alias in COLUMN_ALIASES.get(canonical, ()):
        if alias in frame.columns:
            return alias
    # nested JSON records flatten to 'outer.inner'; match on the last part
    for col in frame.columns:
        last = str(col).rsplit(".", 1)[-1]
        if last == name or last in COLUMN_ALIASES.get(canonical, ()):
            return col
    return None


def show(value: Any) -> str:
    """repr for error messages, without numpy's 'np.float64(...)' wrapping."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _check_positive_finite(values: pd.Series, column: str, argname: str, what: str) -> np.ndarray:
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{argname}={column!r}: {what} must be positive and finite; found "
            f"{show(values.iloc[i])} at row {show(values.index[i])} ({int(bad.sum())} bad value(s) in all)"
        )
    return arr


def load_fit_data(
    data: Any,
    *,
    n_col: str = "N",
    d_col: str = "D",
    loss_col: str = "loss",
    c_col: str | None = None,
    budget_col: str | None = None,
    status_col: str | None = "status",
    initial_loss_col: str | None = "initial_loss",
    source: str | None = None,
) -> FitData:
    """Load and validate data for a scaling-law fit.

    ``D`` is taken from ``d_col``; when that column is absent and a FLOPs column
    (``c_col``, or ``C`` by default) is present, ``D = C / (6 N)``.  ``C`` defaults
    to ``6 N D`` when absent.  N, D and C must be positive and finite (they are
    inputs, so a bad one is a bug, not an outlier); a non-finite loss is kept so
    that it can be flagged as a diverged run, but a loss <= 0 is an error.
    """
    frame, label = read_table(data)
    source = source or label  # a caller that read the file itself passes its name
    if len(frame) == 0:
        raise ValueError(f"data: {source} has no rows")
    cols_list = list(map(str, frame.columns))[:20]

    def missing(arg: str, value: Any, more: str = "") -> ValueError:
        return ValueError(f"{arg}={value!r}: column not found in {source}{more}; available columns: {cols_list}")

    frame, n_src = _n_column(frame, n_col, d_col, c_col, missing)
    loss_src = _find_column(frame, loss_col, "loss", "loss")
    if loss_src is None:
        raise missing("loss_col", loss_col)
    c_src = _find_column(frame, c_col if c_col is not None else "C", "C", "C")
    if c_col is not None and c_src is None:
        raise missing("c_col", c_col)
    out, columns = _ndc(frame, n_src, _find_column(frame, d_col, "D", "D"), c_src, d_col, missing)
    loss = pd.to_numeric(frame[loss_src], errors="coerce").to_numpy(dtype=float)
    nonpos = np.isfinite(loss) & (loss <= 0)
    if nonpos.any():
        i = int(np.flatnonzero(nonpos)[0])
        raise ValueError(
            f"loss_col={loss_src!r}: losses must be positive (the fit works on log loss); found "
            f"{show(loss[i])} at row {show(frame.index[i])}"
        )
    out["loss"] = loss
    columns["loss"] = loss_src
    b_src = _find_column(frame, budget_col if budget_col is not None else "budget", "budget", "budget")
    if budget_col is not None and b_src is None:
        raise missing("budget_col", budget_col)
    for key, src in (("budget", b_src), ("status", _find_column(frame, status_col, "status", "status")),
                     ("initial_loss", _find_column(frame, initial_loss_col, "initial_loss", "initial_loss"))):
        if src is not None:
            values = frame[src]
            out[key] = (pd.to_numeric(values, errors="coerce").to_numpy(dtype=float) if key == "initial_loss"
                        else values.to_numpy())
            columns[key] = src
    if "outlier" in frame.columns:  # flags set earlier (by flag_outliers or by hand) are honoured
        out["outlier"] = frame["outlier"].fillna(False).astype(bool).to_numpy()
        if "outlier_reason" in frame.columns:
            out["outlier_reason"] = frame["outlier_reason"].fillna("").astype(str).to_numpy()
    return FitData(frame=out, source=source, columns=columns)


def _n_column(frame: pd.DataFrame, n_col: str, d_col: str, c_col: str | None,
              missing: Any) -> tuple[pd.DataFrame, str]:
    """The column of N, or N = C/(6D) from the FLOPs and tokens (as Llama 3's published (C, D, loss) needs)."""
    n_src = _find_column(frame, n_col, "N", "N")
    if n_src is not None:
        return frame, n_src
    d_try = _find_column(frame, d_col, "D", "D")
    c_try = _find_column(frame, c_col if c_col is not None else "C", "C", "C")
    if n_col != "N":  # a column named explicitly is never guessed or derived
        raise missing("n_col", n_col)
    if d_try is None or c_try is None:
        raise missing("n_col", n_col, ", and no token and FLOPs columns to derive N = C/(6D) from (any two of "
                                      "N, D, C are needed)")
    frame = frame.copy()
    frame["C/(6D)"] = (_check_positive_finite(frame[c_try], c_try, "c_col", "FLOPs C")
                       / (6.0 * _check_positive_finite(frame[d_try], d_try, "d_col", "token counts D")))
    return frame, "C/(6D)"


def _ndc(frame: pd.DataFrame, n_src: str, d_src: str | None, c_src: str | None, d_col: str,
         missing: Any) -> tuple[pd.DataFrame, dict[str, str]]:
    """N, D and C checked positive and finite; a missing D or C derived from C = 6·N·D."""
    out = pd.DataFrame(index=frame.index)
    out["N"] = N = _check_positive_finite(frame[n_src], n_src, "n_col", "parameter counts N")
    columns = {"N": n_src}
    if d_src is not None:
        out["D"] = _check_positive_finite(frame[d_src], d_src, "d_col", "token counts D")
        columns["D"] = d_src
        if c_src is not None:
            out["C"] = _check_positive_finite(frame[c_src], c_src, "c_col", "FLOPs C")
            columns["C"] = c_src
        else:
            out["C"] = 6.0 * out["N"] * out["D"]
            columns["C"] = "6ND"
    elif c_src is not None:
        C = _check_positive_finite(frame[c_src], c_src, "c_col", "FLOPs C")
        out["C"] = C
        out["D"] = C / (6.0 * N)
        columns["C"], columns["D"] = c_src, "C/(6N)"
    else:
        raise missing("d_col", d_col, ", and no FLOPs column (c_col) to derive D = C/(6N) from")
    return out, columns


def load_chinchilla(*, drop_highest_loss: int = 0) -> pd.DataFrame:
    """Epoch AI's 245 points read off Chinchilla's Figure 4 (see reference/PROVENANCE.md).

    Returns columns ``N``, ``D`` (= C/(6N)), ``C`` and ``loss``, sorted as in the file.
    ``drop_highest_loss=5`` reproduces the 240 points of Epoch AI's re-fit.
    """
    if not isinstance(drop_highest_loss, (int, np.integer)) or isinstance(drop_highest_loss, bool):
        raise TypeError(f"drop_highest_loss: expected an int, found {type(drop_highest_loss).__name__}")
    if not 0 <= drop_highest_loss < 245:
        raise ValueError(f"drop_highest_loss: expected 0 <= value < 245, found {drop_highest_loss}")
    ref = resources.files("flops_fit").joinpath("reference", REFERENCE_CHINCHILLA)
    with ref.open("r") as fh:
        raw = pd.read_csv(fh)
    out = pd.DataFrame(
        {
            "N": raw["Model Size"].astype(float),
            "C": raw["Training FLOP"].astype(float),
            "loss": raw["loss"].astype(float),
        }
    )
    out["D"] = out["C"] / (6.0 * out["N"])
    out = out[["N", "D", "C", "loss"]]
    if drop_highest_loss:
        out = out.drop(out["loss"].nlargest(drop_highest_loss).index)
    return out


def load_llama3() -> pd.DataFrame:
    """Llama 3's 133 IsoFLOP runs (10 budgets, 6e18-1e22 FLOPs) digitised from Figure 2 of the paper
    (see reference/PROVENANCE.md). Columns ``compute_budget``, ``N`` (= C/(6D)), ``D``, ``loss``."""
    ref = resources.files("flops_fit").joinpath("reference", REFERENCE_LLAMA3)
    with ref.open("r") as fh:
        raw = pd.read_csv(fh)
    c = raw["compute_budget"].astype(float)
    d = raw["training_tokens"].astype(float)
    return pd.DataFrame({"compute_budget": c, "N": c / (6.0 * d), "D": d, "loss": raw["validation_loss"].astype(float)})


@dataclass(frozen=True)
class KaplanLaw:
    """Kaplan et al. (2020)'s L(N, D) = ((Nc/N)^(αN/αD) + Dc/D)^αD, with their fitted constants.

    A law of another functional form than Chinchilla's E + A/N^α + B/D^β: what a fit
    must be tested against, since a test on its own form proves little.
    """

    Nc: float = 8.8e13
    Dc: float = 5.4e13
    alpha_N: float = 0.076
    alpha_D: float = 0.095

    def __call__(self, N: Any, D: Any) -> Any:
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return ((self.Nc / N) ** (self.alpha_N / self.alpha_D) + self.Dc / D) ** self.alpha_D

    def n_opt(self, C: float) -> float:
        """The compute-optimal N at C (6·N·D = C), by a bounded 1-D minimisation in ln N."""
        from scipy.optimize import minimize_scalar

        f = lambda x: float(self(np.exp(x), C / (6.0 * np.exp(x))))  # noqa: E731
        return float(np.exp(minimize_scalar(f, bounds=(0.0, 80.0), method="bounded",
                                            options={"xatol": 1e-10}).x))


def synthetic_isoflop(
    *,
    E: float = 2.0,
    A: float = 300.0,
    B: float = 800.0,
    alpha: float = 0.30,
    beta: float = 0.40,
    budgets: Any = (1e17, 1e18, 1e19, 1e20, 1e21),
    points_per_budget: int = 7,
    span_decades: float = 1.0,
    tokens_per_param: float = 20.0,
    noise: float = 0.0,
    seed: int = 0,
    law: Any = None,
) -> pd.DataFrame:
    """An IsoFLOP-style sweep on a known law, for tests, benchmarks and examples.

    ``law``: any callable ``law(N, D) -> loss`` (e.g. :class:`KaplanLaw`) instead of
    E + A/N^alpha + B/D^beta.

    Per budget C, ``points_per_budget`` values of N log-spaced over +-``span_decades``
    around sqrt(C / (6 * tokens_per_param)) (the 20-tokens-per-parameter point, which
    for the default law lies 10-20x below the true optimum: a deliberately off-centre
    design), D = C / (6N), loss = law * exp(noise * standard normal) (seeded).
    Columns: ``N``, ``D``, ``C``, ``budget``, ``loss``.
    """
    budgets = np.asarray(budgets, dtype=float)
    if budgets.ndim != 1 or budgets.size == 0 or not np.all(np.isfinite(budgets) & (budgets > 0)):
        raise ValueError(f"budgets: expected a non-empty list of positive finite FLOPs, found {budgets!r}")
    if not isinstance(points_per_budget, (int, np.integer)) or points_per_budget < 2:
        raise ValueError(f"points_per_budget: expected an int >= 2, found {points_per_budget!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: expected a finite number >= 0, found {noise!r}")
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        centre = np.sqrt(C / (6.0 * tokens_per_param))
        for N in centre * np.logspace(-span_decades, span_decades, points_per_budget):
            rows.append((N, C / (6.0 * N), C, C))
    out = pd.DataFrame(rows, columns=["N", "D", "C", "budget"])
    clean = E + A * out["N"] ** (-alpha) + B * out["D"] ** (-beta) if law is None else law(out["N"], out["D"])
    out["loss"] = clean * np.exp(noise * rng.standard_normal(len(out)))
    return out


#: A budget label this far from a run's own 6·N·D is warned about, naming the run.
BUDGET_LABEL_TOLERANCE = 0.20


def runs_frame(
    data: Any,
    *,
    n_col: str = "N",
    d_col: str = "D",
    loss_col: str = "loss",
    c_col: str | None = None,
    budget_col: str | None = None,
    budget_tolerance: float = 0.10,
    best_of: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """A user's runs as the analysis table (compute_budget, N, D, loss[, status, initial_loss,
    experiment_id]) plus notes on what was derived, grouped, dropped or looks wrong.

    Budgets come from a budget column (``budget_col``, or one named budget /
    compute_budget), or else runs are grouped by their compute (C, or 6·N·D) into
    budgets: consecutive runs, in order of compute, whose compute is within
    ``budget_tolerance`` (relative) of their group's first run share a budget,
    labelled with the group's geometric-mean compute. ``best_of``: a column over which
    several runs share one (N, D), e.g. a learning-rate sweep: only the lowest loss
    per (N, D) is kept.
    """
    if not (isinstance(budget_tolerance, (int, float)) and 0 < budget_tolerance < 1):
        raise ValueError(f"budget_tolerance: expected a relative tolerance in (0, 1), found {budget_tolerance!r}")
    raw, source = read_table(data)  # read once: the fit columns and the rest (ids, best_of) come from it
    fd = load_fit_data(raw, n_col=n_col, d_col=d_col, loss_col=loss_col, c_col=c_col, budget_col=budget_col,
                       source=source)
    frame = fd.frame.copy()
    notes: list[str] = []
    if fd.columns.get("N") == "C/(6D)":
        notes.append(f"N derived as C/(6D) from columns {fd.columns['C']!r} and {fd.columns['D']!r}")
    if fd.columns.get("D") == "C/(6N)":
        notes.append(f"D derived as C/(6N) from columns {fd.columns['C']!r} and {fd.columns['N']!r}")
    if "experiment_id" in raw.columns:
        frame["experiment_id"] = raw.loc[frame.index, "experiment_id"].astype(str).to_numpy()
    if "extra" in raw.columns:  # runs on no IsoFLOP budget (e.g. extra cooldown branches): Approach 3 only
        frame["extra"] = _booleans(raw.loc[frame.index, "extra"], "extra")
    if best_of is not None:
        if best_of not in raw.columns:
            raise ValueError(f"best_of={best_of!r}: column not found; available columns: {list(raw.columns)[:20]}")
        finite = frame[np.isfinite(frame["loss"])]
        best = finite.groupby(["N", "D"], sort=False)["loss"].idxmin()
        n_before = len(frame)
        frame = frame.loc[sorted(best.to_numpy(), key=list(frame.index).index)]
        notes.append(f"best_of={best_of!r}: kept the lowest loss of each (N, D), {len(frame)} of {n_before} runs "
                     f"({n_before - len(frame)} dropped)")
    six_nd = 6.0 * frame["N"] * frame["D"]
    if "budget" in frame.columns:
        label = pd.to_numeric(frame["budget"], errors="coerce").to_numpy(float)
        if not np.all(np.isfinite(label) & (label > 0)):
            i = int(np.flatnonzero(~(np.isfinite(label) & (label > 0)))[0])
            raise ValueError(f"budget_col={fd.columns['budget']!r}: budgets must be positive finite FLOPs; found "
                             f"{show(frame['budget'].iloc[i])} at row {show(frame.index[i])}")
        off = np.abs(six_nd.to_numpy() / label - 1) > BUDGET_LABEL_TOLERANCE
        for i in np.flatnonzero(off)[:5]:
            notes.append(f"run {_run_label(frame, i)}: budget label {label[i]:.3g} is "
                         f"{100 * abs(six_nd.iloc[i] / label[i] - 1):.0f}% off its 6·N·D = {six_nd.iloc[i]:.3g}")
        if off.sum() > 5:
            notes.append(f"... {int(off.sum())} runs in all have a budget label more than "
                         f"{100 * BUDGET_LABEL_TOLERANCE:.0f}% off their 6·N·D")
        frame["compute_budget"] = label
    else:
        c = frame["C"].to_numpy(float)
        frame["compute_budget"] = group_budgets(c, budget_tolerance)
        k = len(np.unique(frame["compute_budget"]))
        notes.append(f"no budget column: {len(frame)} runs grouped into {k} budgets by compute "
                     f"(within {100 * budget_tolerance:.0f}% of each group's first run)")
    keep = [c for c in ("compute_budget", "N", "D", "loss", "status", "initial_loss", "experiment_id", "extra")
            if c in frame.columns]
    return frame[keep].reset_index(drop=True), notes


def _booleans(col: pd.Series, name: str) -> np.ndarray:
    """A column of true/false flags (bools, 0/1, or the words true/false; empty: false), else ValueError."""
    words = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False, "": False, "nan": False,
             "none": False}
    out = []
    for i, v in col.items():
        key = str(v).strip().lower()
        if key not in words:
            raise ValueError(f"{name}: expected true or false (a run on no IsoFLOP budget, or not), found {show(v)} "
                             f"at row {show(i)}")
        out.append(words[key])
    return np.array(out, bool)


def _run_label(frame: pd.DataFrame, i: int) -> str:
    return str(frame["experiment_id"].iloc[i]) if "experiment_id" in frame else f"row {show(frame.index[i])}"


def group_budgets(compute: np.ndarray, tolerance: float) -> np.ndarray:
    """One budget label per run: runs grouped in order of compute, a new group when a run is more than
    `tolerance` above its group's first; each group labelled with its geometric-mean compute."""
    order = np.argsort(compute, kind="stable")
    labels = np.empty(compute.size)
    start = 0
    lc = np.log(compute[order])
    for j in range(1, compute.size + 1):
        if j == compute.size or lc[j] - lc[start] > np.log1p(tolerance):
            labels[order[start:j]] = float(np.exp(lc[start:j].mean()))
            start = j
    return labels
