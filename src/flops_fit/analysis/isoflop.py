"""Chinchilla Approach 2: parabola vertex per IsoFLOP curve, then power laws in C.

Experiments are grouped by the budget they were planned for (an exact float
from the plan), never by rounding log10(C). D_opt is derived from N_opt through
C = 6·N·D so the two always agree.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from flops_fit.flops import SIX_ND, CostModel
from flops_fit.planning import MIN_SIZES_PER_BUDGET  # the planner's rule: a bracketed minimum needs 3 sizes

EDGE_FRACTION = 0.1  # a vertex within 10% of the sampled log-N range from an end is "near the edge"


@dataclass
class BudgetOptimum:
    """The compute-optimal point of one IsoFLOP curve."""

    compute_budget: float
    n_opt: float
    d_opt: float
    loss_opt: float
    n_points: int
    method: str  # "parabola" or "best_sampled" (fallback)
    parabola: list[float] | None  # [c2, c1, c0] of loss = c2·x² + c1·x + c0, x = ln N
    r_squared: float | None
    in_range: bool  # vertex inside the sampled range of N
    near_edge: bool
    warning: str = ""

    @property
    def tokens_per_param(self) -> float:
        return self.d_opt / self.n_opt


@dataclass
class PowerLaw:
    """y = k · C^a, fitted by least squares on log y vs log C."""

    coefficient_k: float
    exponent_a: float
    r_squared: float

    def __call__(self, compute: float | np.ndarray) -> float | np.ndarray:
        return self.coefficient_k * np.asarray(compute, dtype=float) ** self.exponent_a


@dataclass
class LossLaw:
    """L_opt(C) = l_inf + k · C^(-exponent_a)."""

    coefficient_k: float
    exponent_a: float
    l_inf: float
    r_squared: float
    note: str = ""

    def __call__(self, compute: float | np.ndarray) -> float | np.ndarray:
        c = np.asarray(compute, dtype=float)
        return self.l_inf + self.coefficient_k * c ** (-self.exponent_a)


@dataclass
class IsoFLOPAnalysis:
    """Approach 2's outputs: per-budget optima and the fitted laws."""

    optima: list[BudgetOptimum]
    n_opt_fit: PowerLaw
    d_opt_fit: PowerLaw
    l_opt_fit: LossLaw
    warnings: list[str] = field(default_factory=list)
    cost: CostModel = SIX_ND  # how D_opt follows from N_opt: C = 6·N·D, or a measured c·N^b·D

    @property
    def optimal_ratio(self) -> float:
        """Geometric mean of D_opt/N_opt over the budgets."""
        return float(np.exp(np.mean([math.log(o.tokens_per_param) for o in self.optima])))

    def predict(self, compute: float) -> dict[str, float]:
        n = float(self.n_opt_fit(compute))
        with np.errstate(all="ignore"):  # a degenerate law's N of 0 or inf: inf/nan, judged downstream
            d = float(self.cost.units(compute, n))
        return {
            "target_compute": float(compute),
            "optimal_params": n,
            "optimal_tokens": d,
            "expected_loss": float(self.l_opt_fit(compute)),
            "tokens_per_param": float(np.float64(d) / n) if n else math.inf,
        }

    def to_dict(self) -> dict:
        return {
            "n_opt_fit": asdict(self.n_opt_fit),
            "d_opt_fit": asdict(self.d_opt_fit),
            "l_opt_fit": asdict(self.l_opt_fit),
            "optimal_points": [asdict(o) | {"tokens_per_param": o.tokens_per_param} for o in self.optima],
            "optimal_ratio": self.optimal_ratio,
            "warnings": list(self.warnings),
            "cost_model": self.cost.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "scaling_laws.json") -> "IsoFLOPAnalysis":
        try:
            optima = [
                BudgetOptimum(**{k: v for k, v in o.items() if k != "tokens_per_param"})
                for o in d["optimal_points"]
            ]
            return cls(
                optima=optima,
                n_opt_fit=PowerLaw(**d["n_opt_fit"]),
                d_opt_fit=PowerLaw(**d["d_opt_fit"]),
                l_opt_fit=LossLaw(**d["l_opt_fit"]),
                warnings=list(d.get("warnings", [])),
                cost=CostModel(**d["cost_model"]) if d.get("cost_model") else SIX_ND,
            )
        except KeyError as exc:
            raise ValueError(f"{source}: required field {exc.args[0]!r} is missing") from None
        except TypeError as exc:
            raise ValueError(f"{source}: malformed Approach 2 fit: {exc}") from None


def _r_squared(y: np.ndarray, y_hat: np.ndarray) -> float:
    ss_res = float(np.sum((y - y_hat) ** 2))
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0


def _show_exp(x: float) -> str:
    """e^x for a message, without overflowing when x is huge (a nearly straight curve's vertex)."""
    return f"{math.exp(x):.3g}" if abs(x) < 700 else f"e^{x:.4g}"


def fit_budget(compute_budget: float, n: np.ndarray, loss: np.ndarray, cost: CostModel = SIX_ND) -> BudgetOptimum:
    """Vertex of a parabola in ln N; the best sampled point, flagged, when there is no usable vertex."""
    order = np.argsort(n)
    n, loss = np.asarray(n, float)[order], np.asarray(loss, float)[order]
    x = np.log(n)
    best = int(np.argmin(loss))

    def fallback(reason: str, coeffs: list[float] | None, r2: float | None) -> BudgetOptimum:
        return BudgetOptimum(
            compute_budget=compute_budget,
            n_opt=float(n[best]),
            d_opt=float(cost.units(compute_budget, n[best])),
            loss_opt=float(loss[best]),
            n_points=len(n),
            method="best_sampled",
            parabola=coeffs,
            r_squared=r2,
            in_range=False,
            near_edge=True,
            warning=f"budget {compute_budget:.3e}: {reason}; using the best sampled point instead",
        )

    if len(n) < 3:
        return fallback(f"only {len(n)} usable runs, a parabola needs 3", None, None)
    if np.unique(x).size < 3:
        return fallback(f"only {np.unique(x).size} distinct model sizes, a parabola needs 3", None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RankWarning on nearly collinear sizes: judged by the checks below
        c2, c1, c0 = np.polyfit(x, loss, 2)
    coeffs = [float(c2), float(c1), float(c0)]
    r2 = _r_squared(loss, np.polyval([c2, c1, c0], x))
    if not all(math.isfinite(v) for v in coeffs):
        return fallback("the parabola fit is not finite", None, None)
    if c2 <= 0:
        return fallback("the IsoFLOP curve has no minimum (parabola opens downward)", coeffs, r2)
    xv = -c1 / (2 * c2)
    lo, hi = x[0], x[-1]
    if not lo <= xv <= hi:
        side = "below the smallest" if xv < lo else "above the largest"
        return fallback(
            f"parabola vertex N={_show_exp(xv)} lies {side} sampled model (the sweep does not "
            "bracket the optimum)",
            coeffs,
            r2,
        )
    margin = EDGE_FRACTION * (hi - lo)
    near = xv - lo < margin or hi - xv < margin
    n_opt = float(math.exp(xv))
    return BudgetOptimum(
        compute_budget=compute_budget,
        n_opt=n_opt,
        d_opt=float(cost.units(compute_budget, n_opt)),
        loss_opt=float(np.polyval([c2, c1, c0], xv)),
        n_points=len(n),
        method="parabola",
        parabola=coeffs,
        r_squared=r2,
        in_range=True,
        near_edge=bool(near),
        warning=(
            f"budget {compute_budget:.3e}: vertex N={n_opt:.3g} is near the edge of the sampled range; "
            "the parabola fit is biased there (widen or re-centre the sweep)"
            if near
            else ""
        ),
    )


def fit_power_law(c: np.ndarray, y: np.ndarray) -> PowerLaw:
    lc, ly = np.log(c), np.log(y)
    a, logk = np.polyfit(lc, ly, 1)
    with np.errstate(over="ignore"):  # a degenerate fit gives k = inf, judged downstream, never a crash
        k = float(np.exp(logk))
    return PowerLaw(k, float(a), _r_squared(ly, a * lc + logk))


def fit_loss_law(c: np.ndarray, loss: np.ndarray) -> LossLaw:
    """L_inf + k·C^-gamma (scipy); with fewer than 4 budgets, a pure power law (L_inf = 0)."""
    c, loss = np.asarray(c, float), np.asarray(loss, float)
    c_ref = float(np.exp(np.mean(np.log(c))))  # scale C for conditioning
    if len(c) >= 4 and np.ptp(loss) > 0:

        def model(cc: np.ndarray, l_inf: float, logk: float, g: float) -> np.ndarray:
            return l_inf + np.exp(logk) * (cc / c_ref) ** (-g)

        l0 = float(loss.min()) * 0.9
        g0 = max(1e-3, -np.polyfit(np.log(c), np.log(np.maximum(loss - l0, 1e-12)), 1)[0])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                (l_inf, logk, g), _ = curve_fit(
                    model,
                    c,
                    loss,
                    p0=[l0, math.log(max(np.median(loss) - l0, 1e-9)), g0],
                    bounds=([0.0, -50.0, 0.0], [float(loss.min()), 50.0, 3.0]),
                    maxfev=20000,
                )
            k = math.exp(logk) * c_ref**g
            pred = model(c, l_inf, logk, g)
            return LossLaw(float(k), float(g), float(l_inf), _r_squared(loss, pred))
        except (RuntimeError, ValueError):
            pass
    pl = fit_power_law(c, loss)
    return LossLaw(
        pl.coefficient_k,
        -pl.exponent_a,
        0.0,
        pl.r_squared,
        note="fitted as a pure power law (L_inf = 0): fewer than 4 budgets or the 3-parameter fit failed",
    )


def fit_isoflop(df: pd.DataFrame, cost: CostModel = SIX_ND) -> IsoFLOPAnalysis:
    """Approach 2 on a table with columns compute_budget, N, loss (rows already filtered to usable runs);
    each D_opt spends its C under `cost`."""
    missing = [c for c in ("compute_budget", "N", "loss") if c not in df.columns]
    if missing:
        raise ValueError(f"data: expected columns compute_budget, N, loss; missing {missing}")
    usable = df[np.isfinite(df["loss"].astype(float))]
    optima: list[BudgetOptimum] = []
    notes: list[str] = []
    skipped: list[str] = []
    for budget, group in usable.groupby("compute_budget", sort=True):
        k = group["N"].nunique()
        if k < MIN_SIZES_PER_BUDGET:
            skipped.append(f"{float(budget):.3g} ({k})")
            continue
        o = fit_budget(float(budget), group["N"].to_numpy(float), group["loss"].to_numpy(float), cost)
        optima.append(o)
        if o.warning:
            notes.append(o.warning)
    if skipped:
        notes.append(f"{len(skipped)} compute value(s) with fewer than {MIN_SIZES_PER_BUDGET} distinct model sizes "
                     "(no IsoFLOP curve: e.g. extra branches, or scattered runs) left out of Approach 2, fitted by "
                     f"Approach 3 only (compute (sizes)): {', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''}")
    if len(optima) < 2:
        raise ValueError(
            f"data: Approach 2 needs optima at 2 or more compute budgets with {MIN_SIZES_PER_BUDGET}+ model sizes "
            f"each, found {len(optima)} (add budgets, or check how many runs completed)"
        )
    c = np.array([o.compute_budget for o in optima])
    n_opt = np.array([o.n_opt for o in optima])
    n_fit = fit_power_law(c, n_opt)
    # D_opt follows from N_opt through C = c N^b D (6·N: c=6, b=1): k_D = 1/(c k_N^b), exponent 1 - a b.
    d_pts = cost.units(c, n_opt)
    k_d = 1.0 / (cost.c * n_fit.coefficient_k ** cost.b)
    b = 1.0 - n_fit.exponent_a * cost.b
    d_fit = PowerLaw(k_d, b, _r_squared(np.log(d_pts), np.log(k_d * c**b)))
    l_fit = fit_loss_law(c, np.array([o.loss_opt for o in optima]))
    if l_fit.note:
        notes.append(l_fit.note)
    n_bad = sum(not o.in_range for o in optima)
    if n_bad:
        notes.append(
            f"{n_bad} of {len(optima)} budgets did not bracket their optimum; their points are the best "
            "sampled sizes and bias the exponent"
        )
    return IsoFLOPAnalysis(optima=optima, n_opt_fit=n_fit, d_opt_fit=d_fit, l_opt_fit=l_fit, warnings=notes,
                           cost=cost)


@dataclass
class IsoFLOPBootstrap:
    """Approach 2 refitted on resampled experiments: samples of (ln k, a) and of the loss law."""

    n_log_k: np.ndarray  # ln k of N_opt = k·C^a, one per successful resample
    n_exponent: np.ndarray  # a
    loss_params: np.ndarray  # (n, 3): l_inf, k, gamma of L_opt = l_inf + k·C^-gamma
    n_resamples: int
    n_failed: int
    seed: int
    budgets: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the budgets, sorted
    budget_n_opt: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (n, len(budgets)) vertices

    def n_opt_samples(self, compute: float) -> np.ndarray:
        return np.exp(self.n_log_k + self.n_exponent * math.log(compute))

    def loss_samples(self, compute: float) -> np.ndarray:
        lp = self.loss_params
        return lp[:, 0] + lp[:, 1] * compute ** (-lp[:, 2])

    @property
    def n_ok(self) -> int:
        return int(self.n_exponent.size)

    def vertex_samples(self, budget: float) -> np.ndarray:
        """The per-resample optimum N of one measured budget (its parabola vertex or best point)."""
        hit = np.flatnonzero(np.isclose(self.budgets, float(budget), rtol=1e-12, atol=0))
        return self.budget_n_opt[:, int(hit[0])] if hit.size else np.zeros(0)

    def to_dict(self) -> dict:
        return {"n_resamples": self.n_resamples, "n_failed": self.n_failed, "seed": self.seed}


#: Numeric failures that make one resample (or one held-out refit) fail, never the whole analysis.
NUMERIC_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)


def bootstrap_isoflop(df: pd.DataFrame, n_resamples: int, seed: int = 0) -> IsoFLOPBootstrap | None:
    """Resample experiments with replacement within each budget, refit Approach 2 each time."""
    from flops_fit.analysis.bootstrap import bootstrap_indices

    if n_resamples <= 0:
        return None
    budget = df["compute_budget"].to_numpy(float)
    n_all, l_all = df["N"].to_numpy(float), df["loss"].to_numpy(float)
    c = np.unique(budget)
    members = [np.flatnonzero(budget == b) for b in c]
    logk, a, lp, vert, failed = [], [], [], [], 0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for idx in bootstrap_indices(budget, n_resamples, seed):  # stratified: idx[m] stays in budget m
            try:
                optima = [fit_budget(float(b), n_all[idx[m]], l_all[idx[m]]) for b, m in zip(c, members)]
                n_opt = np.array([o.n_opt for o in optima])
                nf = fit_power_law(c, n_opt)
                lf = fit_loss_law(c, np.array([o.loss_opt for o in optima]))
                row = (math.log(nf.coefficient_k), nf.exponent_a, lf.l_inf, lf.coefficient_k, lf.exponent_a)
            except NUMERIC_ERRORS:
                failed += 1
                continue
            if not all(math.isfinite(v) for v in row):
                failed += 1
                continue
            logk.append(row[0])
            a.append(row[1])
            lp.append(row[2:])
            vert.append(n_opt)
    if not a:
        return None
    return IsoFLOPBootstrap(np.array(logk), np.array(a), np.array(lp), n_resamples, failed, seed,
                            budgets=c, budget_n_opt=np.array(vert))
