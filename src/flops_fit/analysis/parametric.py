"""Chinchilla Approach 3: fit the whole loss surface L(N, D) = E + A/N^alpha + B/D^beta.

Two solvers:

``method="lbfgs"`` (default) follows Hoffmann et al. (2022) as corrected by
Besiroglu et al. (Epoch AI, 2024): in log space,
``log L = LSE(log A - alpha log N, log B - beta log D, log E)``, a Huber loss
(delta = 1e-3) on the residuals ``log L_pred - log L_obs``, **summed** (a mean
shrinks the gradient and stops L-BFGS early), minimised by scipy's L-BFGS-B
with an analytic gradient. The 4,500-point Chinchilla/Epoch start grid is
scored in one vectorised pass and L-BFGS-B runs only from the best
``n_best_starts`` (16) of them; the lowest objective wins. On the Chinchilla
data each of the 10 best-scored starts reaches the optimum of the full
4,500-start search (best-16 minus all-4,500 objective: 2e-17, see
benchmarks/bench_parametric_fit.py); so do the top starts on the synthetic
sweeps of the tests (a slow test checks both against all 4,500 starts).

``method="vpnls"`` minimises **the same** summed Huber objective; only the way
it finds its start differs. Variable projection: for fixed (alpha, beta) the
model is linear in (E, A, B), solved by non-negative least squares on relative
residuals (``(L_pred - L_obs) / L_obs``, the first-order match of the log-space
residual); that 2-D profile over (alpha, beta) is searched on a grid and refined
by Nelder-Mead, which needs no start grid for A, B, E. Its optimum is then
polished jointly by the same L-BFGS-B on the Huber objective, so both methods
report the minimiser of one objective and agree when both find it (on
Chinchilla's data to better than 3 significant digits; tested).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize, nnls

from flops_fit.analysis.data_io import FitData, load_fit_data, show
from flops_fit.flops import SIX_ND, CostModel
from flops_fit.analysis.outliers import (
    DEFAULT_MIN_SCALE,
    DEFAULT_Z_THRESHOLD,
    flag_outliers,
    robust_z,
)

METHODS = ("lbfgs", "vpnls")
#: Fitted and derived parameters, in the order used by bootstrap sample arrays.
PARAM_NAMES = ("E", "A", "B", "alpha", "beta", "a", "b", "G")
#: Number of free parameters (E, A, B, alpha, beta): the minimum number of points.
N_FREE_PARAMS = 5
#: L-BFGS-B settings: tight enough that noise-free data give exponents to ~1e-6.
LBFGS_OPTIONS = {"maxiter": 5000, "maxfun": 10000, "ftol": 1e-13, "gtol": 1e-9}
DEFAULT_N_BEST_STARTS = 16
#: (alpha, beta) grid of the vpnls profile search.
VPNLS_GRID = np.round(np.arange(0.05, 2.0001, 0.05), 10)


def chinchilla_grid() -> np.ndarray:
    """The 4,500 starts of Hoffmann et al. / Epoch AI, rows of (log A, log B, log E, alpha, beta).

    alpha, beta in {0, 0.5, ..., 2}; log E in {-1, -0.5, ..., 1}; log A, log B in {0, 5, ..., 25}.
    """
    ab = np.arange(0.0, 2.0001, 0.5)
    e = np.arange(-1.0, 1.0001, 0.5)
    big = np.arange(0.0, 25.0001, 5.0)
    grid = np.meshgrid(big, big, e, ab, ab, indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1)


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    """Limit BLAS to one thread while fitting.

    L-BFGS-B calls BLAS on 5x5 problems thousands of times; a multithreaded
    OpenBLAS then spends most of its time waking threads (measured 6x slower on a
    busy 2-core machine). Uses threadpoolctl when installed, else does nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --------------------------------------------------------------------------- objective


def huber_log_objective(
    theta: np.ndarray, lN: np.ndarray, lD: np.ndarray, lL: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Summed Huber loss of log-space residuals and its analytic gradient.

    ``theta = (log A, log B, log E, alpha, beta)``. With softmax weights w_k of the
    three LSE terms and psi = clip(r, -delta, delta), dF/dlogA = sum psi w_1,
    dF/dalpha = -sum psi w_1 log N, and likewise for B/beta and E.
    """
    la, lb, le, al, be = theta
    x1 = la - al * lN
    x2 = lb - be * lD
    m = np.maximum(np.maximum(x1, x2), le)
    w1 = np.exp(x1 - m)
    w2 = np.exp(x2 - m)
    w3 = np.exp(le - m)
    s = w1 + w2 + w3
    r = m + np.log(s) - lL
    ar = np.abs(r)
    small = ar <= delta
    f = float(np.where(small, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum())
    psi = np.clip(r, -delta, delta) / s
    g1 = psi * w1
    g2 = psi * w2
    grad = np.array([g1.sum(), g2.sum(), (psi * w3).sum(), -(g1 @ lN), -(g2 @ lD)])
    return f, grad


def grid_objectives(
    starts: np.ndarray, lN: np.ndarray, lD: np.ndarray, lL: np.ndarray, delta: float
) -> np.ndarray:
    """The summed Huber objective at every row of ``starts``, vectorised (chunked to bound memory)."""
    starts = np.asarray(starts, dtype=float)
    out = np.empty(starts.shape[0])
    chunk = max(1, int(2_000_000 // max(lN.size, 1)))
    for i in range(0, starts.shape[0], chunk):
        s = starts[i : i + chunk]
        x1 = s[:, 0:1] - s[:, 3:4] * lN
        x2 = s[:, 1:2] - s[:, 4:5] * lD
        r = np.logaddexp(np.logaddexp(x1, x2), s[:, 2:3]) - lL
        ar = np.abs(r)
        out[i : i + chunk] = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum(axis=1)
    return out


#: Batched Newton: a resample has converged when its largest gradient component is below this.
NEWTON_GTOL = 1e-9
#: ...or, once no step lowers its objective any more (float precision), below this.
NEWTON_GTOL_STALLED = 1e-7
NEWTON_MAX_ITER = 300
#: after this many iterations, the last few unconverged rows are left to the caller
NEWTON_STRAGGLER_ITER = 40


def _weighted_terms(theta: np.ndarray, W: np.ndarray, lN, lD, lL, delta: float, hessian: bool = True):
    """Objective (and gradient, Hessian, Marquardt scale) of the summed Huber loss for each row of
    ``theta`` (B, 5), with per-point weights ``W`` (B, n): a bootstrap resample is a weight vector
    (how often each point was drawn), so every resample shares one set of points."""
    x1 = theta[:, 0:1] - theta[:, 3:4] * lN
    x2 = theta[:, 1:2] - theta[:, 4:5] * lD
    le = theta[:, 2:3]
    m = np.maximum(np.maximum(x1, x2), le)
    w1, w2, w3 = np.exp(x1 - m), np.exp(x2 - m), np.exp(le - m)
    s = w1 + w2 + w3
    r = m + np.log(s) - lL
    ar = np.abs(r)
    small = ar <= delta
    f = (W * np.where(small, 0.5 * r * r, delta * (ar - 0.5 * delta))).sum(1)
    if not hessian:
        return f
    inv = 1.0 / s
    p1, p2, p3 = w1 * inv, w2 * inv, w3 * inv
    d1 = np.clip(r, -delta, delta) * W  # weight * rho'(r)
    G = np.stack([p1, p2, p3, -p1 * lN, -p2 * lD], axis=1)  # dr/dtheta, (B, 5, n)
    grad = np.matmul(G, d1[:, :, None])[..., 0]
    # H = sum w [rho'' g g^T + rho' (D - g g^T)], D the sparse part of the LSE's curvature
    H = np.matmul(G * (W * small - d1)[:, None, :], G.transpose(0, 2, 1))
    a1, a2 = d1 * p1, d1 * p2
    s1, s2 = a1 @ lN, a2 @ lD
    H[:, 0, 0] += a1.sum(1)
    H[:, 3, 3] += a1 @ (lN * lN)
    H[:, 1, 1] += a2.sum(1)
    H[:, 4, 4] += a2 @ (lD * lD)
    H[:, 2, 2] += (d1 * p3).sum(1)
    H[:, 0, 3] -= s1
    H[:, 3, 0] -= s1
    H[:, 1, 4] -= s2
    H[:, 4, 1] -= s2
    scale = np.matmul(G * G, W[:, :, None])[..., 0] + 1e-300
    return f, grad, H, scale


#: a parameter whose Marquardt scale (root of its summed squared sensitivity) is below this fraction of the
#: largest has left the model for that row (its term underflows next to the others): Newton holds it there
VANISHED_SCALE = 1e-12


def _positive_definite(M: np.ndarray) -> np.ndarray:
    """Per matrix of the batch M (B, k, k), symmetric: whether its Cholesky factorisation has only positive
    pivots (column by column over the whole batch: k small steps instead of B eigen-decompositions)."""
    k = M.shape[-1]
    L = np.zeros_like(M)
    ok = np.ones(M.shape[0], dtype=bool)
    with np.errstate(all="ignore"):
        for j in range(k):
            d = M[:, j, j] - (L[:, j, :j] ** 2).sum(1)
            ok &= d > 0
            root = np.sqrt(np.where(d > 0, d, 1.0))
            L[:, j, j] = root
            if j + 1 < k:
                below = M[:, j + 1:, j] - np.einsum("bik,bk->bi", L[:, j + 1:, :j], L[:, j, :j])
                L[:, j + 1:, j] = below / root[:, None]
    return ok & np.all(np.isfinite(L), axis=(1, 2))


def _solve_rows(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched M x = b; a row whose matrix is singular gets its least-squares solution."""
    try:
        return np.linalg.solve(M, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.stack([np.linalg.lstsq(m, v, rcond=None)[0] for m, v in zip(M, b)])


def solve_weighted_batch(
    theta0: np.ndarray, W: np.ndarray, lN: np.ndarray, lD: np.ndarray, lL: np.ndarray, *, delta: float,
    max_iter: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise the weighted Huber objective for every row of ``W`` at once, from ``theta0`` (one start for
    every row, or one row each).

    Damped Newton (Levenberg-Marquardt on the exact Hessian, shifted to positive definite,
    a step kept only when it lowers the objective), all rows advanced together in numpy:
    a 1,000-resample bootstrap costs about what 30 single L-BFGS-B runs do. A row stops,
    converged, when its largest gradient component is below ``NEWTON_GTOL`` or a kept step
    lowers its objective by less than L-BFGS-B's ``ftol`` (the reference solver's own test,
    so both stop at the same precision). Returns thetas (B, 5) and converged flags; a row
    that has not converged keeps its best point, and the caller refits it another way.
    """
    W = np.asarray(W, dtype=float)
    B = W.shape[0]
    max_iter = NEWTON_MAX_ITER if max_iter is None else int(max_iter)
    th0 = np.atleast_2d(np.asarray(theta0, dtype=float))
    th = th0.copy() if th0.shape[0] == B and B > 1 else np.repeat(th0[:1], B, axis=0)
    lam = np.full(B, 1e-6)
    stalled = np.zeros(B, dtype=int)
    flat = np.zeros(B, dtype=bool)
    ftol = LBFGS_OPTIONS["ftol"]
    f, g, H, sc = _weighted_terms(th, W, lN, lD, lL, delta)
    eye = np.eye(5)
    with np.errstate(all="ignore"):
        for it in range(max_iter):
            gmax = np.abs(g).max(axis=1)
            a = np.flatnonzero((gmax > NEWTON_GTOL) & ~flat & (stalled < 8) & np.isfinite(f))
            if a.size == 0 or (it >= NEWTON_STRAGGLER_ITER and a.size <= max(4, B // 200)):
                break  # a few slow rows: cheaper one by one by the caller's L-BFGS-B than iterated here
            dm = np.sqrt(sc[a])
            # a term that no longer reaches the loss (E -> 0 in a resample that does not pin it; L-BFGS-B drifts
            # there too) leaves a direction without curvature or slope: hold it, solve for the others
            gone = dm < VANISHED_SCALE * dm.max(1, keepdims=True)
            dm = np.where(gone, 1.0, dm)
            hs = H[a] / dm[:, :, None] / dm[:, None, :]  # Marquardt scaling: log A and alpha differ by ~20x
            hs = np.where(gone[:, :, None] | gone[:, None, :], 0.0, hs) + gone[:, :, None] * eye
            ga = np.where(gone, 0.0, g[a])
            sane = np.all(np.isfinite(hs), axis=(1, 2)) & np.all(np.isfinite(ga), axis=1) & (dm.min(1) > 1e-150)
            stalled[a[~sane]] = 99  # degenerate data (e.g. one point carries all the weight): refit another way
            a, dm, hs, ga = a[sane], dm[sane], hs[sane], ga[sane]
            if a.size == 0:
                break
            low = np.zeros(a.size)  # a positive definite row needs no shift: only the others pay for eigvalsh
            indefinite = ~_positive_definite(hs)
            if indefinite.any():
                low[indefinite] = np.linalg.eigvalsh(hs[indefinite])[:, 0]
            lam_a = np.maximum(lam[a], np.where(low < 0, 1.1 * -low + 1e-12, 0.0))
            y = _solve_rows(hs + lam_a[:, None, None] * eye, -(ga / dm))
            trial = th[a] + y / dm
            ft, gt, Ht, st = _weighted_terms(trial, W[a], lN, lD, lL, delta)
            ok = np.isfinite(ft) & np.all(np.isfinite(trial), axis=1) & (ft <= f[a])
            acc, rej = a[ok], a[~ok]
            lam[acc] = np.maximum(lam_a[ok] / 4, 1e-12)
            lam[rej] = lam_a[~ok] * 8 + 1e-8
            stalled[acc] = 0
            stalled[rej] += 1
            flat[acc] = (f[acc] - ft[ok]) <= ftol * np.maximum(np.maximum(np.abs(f[acc]), np.abs(ft[ok])), 1.0)
            th[acc], f[acc], g[acc], H[acc], sc[acc] = trial[ok], ft[ok], gt[ok], Ht[ok], st[ok]
        gmax = np.abs(g).max(axis=1)
    conv = np.isfinite(f) & ((gmax <= NEWTON_GTOL) | flat | ((stalled >= 8) & (gmax <= NEWTON_GTOL_STALLED)))
    return th, conv


@dataclass(frozen=True)
class SolveResult:
    """One solver outcome on arrays (internal: crosses into bootstrap workers)."""

    theta: np.ndarray  # (log A, log B, log E, alpha, beta)
    objective: float
    converged: bool
    n_iter: int
    message: str
    n_starts: int


def _lbfgs(theta0: np.ndarray, lN, lD, lL, delta: float):
    return minimize(
        huber_log_objective,
        np.asarray(theta0, dtype=float),
        args=(lN, lD, lL, delta),
        jac=True,
        method="L-BFGS-B",
        options=LBFGS_OPTIONS,
    )


def _solve_lbfgs(
    lN: np.ndarray,
    lD: np.ndarray,
    lL: np.ndarray,
    *,
    delta: float,
    starts: np.ndarray | None = None,
    n_best: int = DEFAULT_N_BEST_STARTS,
) -> SolveResult:
    """Score all ``starts`` (default: the Chinchilla grid), run L-BFGS-B from the best ``n_best``."""
    starts = chinchilla_grid() if starts is None else np.atleast_2d(np.asarray(starts, dtype=float))
    if starts.shape[0] > n_best:
        f0 = grid_objectives(starts, lN, lD, lL, delta)
        f0 = np.where(np.isfinite(f0), f0, np.inf)
        starts = starts[np.argsort(f0, kind="stable")[:n_best]]
    best = None
    for th in starts:
        res = _lbfgs(th, lN, lD, lL, delta)
        if np.all(np.isfinite(res.x)) and np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        return SolveResult(np.full(5, np.nan), math.inf, False, 0, "no start gave a finite objective", len(starts))
    msg = best.message if isinstance(best.message, str) else best.message.decode()
    return SolveResult(np.asarray(best.x), float(best.fun), bool(best.success), int(best.nit), msg, len(starts))


def _vp_linear(alpha: float, beta: float, lN, lD, L) -> tuple[np.ndarray, float]:
    """For fixed exponents: NNLS for (E, A, B) on relative residuals; returns coefficients and SSE."""
    X = np.column_stack([np.ones_like(L), np.exp(-alpha * lN), np.exp(-beta * lD)]) / L[:, None]
    norms = np.linalg.norm(X, axis=0)
    norms[norms == 0] = 1.0
    coef, rnorm = nnls(X / norms, np.ones_like(L))
    return coef / norms, float(rnorm * rnorm)


def _solve_vpnls(
    lN: np.ndarray,
    lD: np.ndarray,
    L: np.ndarray,
    *,
    exponents0: Sequence[tuple[float, float]] | None = None,
    grid: np.ndarray = VPNLS_GRID,
    delta: float = 1e-3,
) -> SolveResult:
    """Variable projection: profile SSE over (alpha, beta); grid (or given starts), then Nelder-Mead."""

    def profile(x: np.ndarray) -> float:
        if x[0] <= 0 or x[1] <= 0 or x[0] > 10 or x[1] > 10:
            return math.inf
        return _vp_linear(x[0], x[1], lN, lD, L)[1]

    if exponents0 is None:
        sse = np.array([[profile((al, be)) for be in grid] for al in grid])
        flat = np.argsort(sse, axis=None, kind="stable")[:3]
        exponents0 = [(grid[i // grid.size], grid[i % grid.size]) for i in flat]
        n_grid = grid.size**2
    else:
        n_grid = 0
    best = None
    for x0 in exponents0:
        res = minimize(
            profile,
            np.asarray(x0, dtype=float),
            method="Nelder-Mead",
            options={"xatol": 1e-9, "fatol": 1e-15, "maxiter": 4000, "maxfev": 8000},
        )
        if best is None or res.fun < best.fun:
            best = res
    al, be = best.x
    coef, _ = _vp_linear(al, be, lN, lD, L)
    msg = str(best.message)
    zero = [n for n, v in zip("EAB", coef) if not v > 0]
    if zero:
        msg += f"; non-negative least squares set {', '.join(zero)} to 0 (the data cannot separate that term)"
    floor = 1e-12 * float(np.min(L))  # a zeroed term starts tiny, so the log-space polish can start
    E, A, B = (max(float(v), floor) for v in coef)
    theta0 = np.array([math.log(A), math.log(B), math.log(E), al, be])
    polish = _lbfgs(theta0, lN, lD, np.log(L), delta)
    ok = np.all(np.isfinite(polish.x)) and np.isfinite(polish.fun)
    theta = np.asarray(polish.x) if ok else theta0
    f = float(polish.fun) if ok else huber_log_objective(theta0, lN, lD, np.log(L), delta)[0]
    converged = bool(best.success) and bool(polish.success) and not zero
    return SolveResult(theta, f, converged, int(best.nit) + int(polish.nit), msg, n_grid + len(exponents0))


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class ExcludedPoint:
    """A row left out of a fit, with the input's row label and the reason."""

    index: Any
    N: float
    D: float
    loss: float
    reason: str


@dataclass(frozen=True)
class ParametricFit:
    """A fitted L(N, D) = E + A/N^alpha + B/D^beta.

    ``objective`` and ``huber_objective`` are both the summed Huber objective on log
    loss, which either method minimises (kept as two fields for older files).
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    converged: bool
    n_iter: int
    message: str
    n_points: int
    method: str
    huber_delta: float = 1e-3
    huber_objective: float = math.nan
    n_starts: int = 0
    excluded: tuple[ExcludedPoint, ...] = field(default_factory=tuple)

    # derived quantities -------------------------------------------------------
    @property
    def a(self) -> float:
        """Exponent of N_opt in C: N_opt ~ C^a, a = beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt in C: D_opt ~ C^b, b = alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """N_opt = G (C/6)^a, G = (alpha A / (beta B))^(1/(alpha+beta))."""
        with np.errstate(all="ignore"):  # a degenerate fit (an exponent -> 0) gives inf or nan, never a crash
            return float(np.exp(np.log(self.alpha * self.A / (self.beta * self.B)) / (self.alpha + self.beta)))

    @property
    def log_params(self) -> np.ndarray:
        """(log A, log B, log E, alpha, beta): the L-BFGS parameterisation."""
        with np.errstate(divide="ignore"):
            return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])

    def params(self) -> dict[str, float]:
        """All of PARAM_NAMES as floats."""
        return {name: float(getattr(self, name)) for name in PARAM_NAMES}

    # predictions --------------------------------------------------------------
    def predict_loss(self, N: Any, D: Any) -> np.ndarray | float:
        """E + A N^-alpha + B D^-beta (broadcasts)."""
        N = np.asarray(N, dtype=float)
        D = np.asarray(D, dtype=float)
        out = self.E + self.A * N ** (-self.alpha) + self.B * D ** (-self.beta)
        return float(out) if out.ndim == 0 else out

    def optimal_allocation(self, C: Any, cost: CostModel | None = None) -> tuple[Any, Any]:
        """Closed-form compute-optimal (N_opt, D_opt) spending C exactly: 6 N_opt D_opt = C, or
        c N_opt^b D_opt = C under a measured `cost`."""
        C = _check_budget(C, "C")
        with np.errstate(all="ignore"):
            if cost is None or cost == SIX_ND:
                N_opt = np.float64(self.G) * (np.asarray(C, dtype=float) / 6.0) ** self.a
                D_opt = C / (6.0 * N_opt)
            else:
                N_opt, D_opt = cost.parametric_optimum(C, self.E, self.A, self.B, self.alpha, self.beta)
        if np.ndim(N_opt) == 0:
            return float(N_opt), float(D_opt)
        return N_opt, D_opt

    def optimal_loss(self, C: Any, cost: CostModel | None = None) -> np.ndarray | float:
        """Predicted loss at the compute-optimal allocation for budget C."""
        N_opt, D_opt = self.optimal_allocation(C, cost)
        return self.predict_loss(N_opt, D_opt)

    def residuals(self, N: Any, D: Any, loss: Any) -> np.ndarray:
        """log L_pred - log L_obs, the quantity the Huber loss is applied to."""
        return np.log(self.predict_loss(N, D)) - np.log(np.asarray(loss, dtype=float))

    # JSON ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the fields, derived a/b/G, and excluded points (non-int row labels as str)."""

        def plain(v: Any) -> Any:
            return v.item() if isinstance(v, np.generic) else v

        d = {k: plain(v) for k, v in asdict(self).items() if k != "excluded"}
        d["a"], d["b"], d["G"] = self.a, self.b, self.G
        d["excluded"] = [
            {
                "index": plain(p.index) if isinstance(p.index, (int, np.integer)) else str(p.index),
                "N": p.N, "D": p.D, "loss": p.loss, "reason": p.reason,
            }
            for p in self.excluded
        ]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParametricFit:
        """Inverse of to_dict; derived keys (a, b, G) are ignored, missing required keys are errors."""
        if not isinstance(d, Mapping):
            raise TypeError(f"d: expected a mapping, found {type(d).__name__}")
        required = ("E", "A", "B", "alpha", "beta", "objective", "converged", "n_iter", "message", "n_points", "method")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"ParametricFit.from_dict: required field(s) {missing} missing")
        kw = {k: d[k] for k in required}
        for k in ("huber_delta", "huber_objective", "n_starts"):
            if k in d and d[k] is not None:
                kw[k] = d[k]
        for k in ("E", "A", "B", "alpha", "beta", "objective", "huber_delta", "huber_objective"):
            if k in kw:
                kw[k] = math.nan if kw[k] is None else float(kw[k])
        kw["excluded"] = tuple(ExcludedPoint(**p) for p in d.get("excluded", ()) or ())
        return cls(**kw)

    def summary(self) -> str:
        """One line for logs and reports."""
        flag = "" if self.converged else " (NOT converged)"
        return (
            f"L = {self.E:.4g} + {self.A:.4g}/N^{self.alpha:.4f} + {self.B:.4g}/D^{self.beta:.4f}; "
            f"N_opt ~ C^{self.a:.3f}, D_opt ~ C^{self.b:.3f} [{self.method}, {self.n_points} points, "
            f"{len(self.excluded)} excluded]{flag}"
        )


def _check_budget(C: Any, name: str) -> Any:
    arr = np.asarray(C, dtype=float)
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name}: compute budgets must be positive and finite; found {C!r}")
    return float(arr) if arr.ndim == 0 else arr


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class PreparedData:
    """The points a fit uses (after exclusions), as arrays, plus what was excluded."""

    frame: pd.DataFrame  # kept rows, canonical columns (N, D, C, loss, [budget, status, ...])
    excluded: tuple[ExcludedPoint, ...]
    source: str

    @property
    def logs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = self.frame
        return (
            np.log(f["N"].to_numpy(float)),
            np.log(f["D"].to_numpy(float)),
            np.log(f["loss"].to_numpy(float)),
        )


def _excluded_points(frame: pd.DataFrame, mask: np.ndarray, reasons: Sequence[str]) -> list[ExcludedPoint]:
    return [
        ExcludedPoint(index=lab, N=float(n), D=float(d), loss=float(l), reason=str(r))
        for lab, n, d, l, r, m in zip(frame.index, frame["N"], frame["D"], frame["loss"], reasons, mask)
        if m
    ]


def _exclude_mask(frame: pd.DataFrame, exclude: Any) -> np.ndarray:
    """`exclude` as a boolean mask over rows: a boolean array/Series, or row labels."""
    if exclude is None:
        return np.zeros(len(frame), dtype=bool)
    if isinstance(exclude, pd.Series) and exclude.dtype == bool:
        if not exclude.index.equals(frame.index):
            exclude = exclude.reindex(frame.index, fill_value=False)
        return exclude.to_numpy(dtype=bool)
    arr = np.asarray(exclude)
    if arr.dtype == bool:
        if arr.shape != (len(frame),):
            raise ValueError(f"exclude: a boolean mask must have one value per row ({len(frame)}), found shape {arr.shape}")
        return arr.copy()
    labels = list(np.atleast_1d(arr))
    unknown = [lab for lab in labels if lab not in frame.index]
    if unknown:
        raise ValueError(
            f"exclude: row label(s) [{', '.join(show(u) for u in unknown[:5])}] not found in the data's index"
        )
    return frame.index.isin(labels)


def prepare_points(
    fd: FitData, *, exclude: Any = None, exclude_outliers: bool = True
) -> PreparedData:
    """Apply caller exclusions and hard outlier flags (status, non-finite, above initial loss)."""
    frame = fd.frame
    mask = _exclude_mask(frame, exclude)
    reasons = ["excluded by caller" if m else "" for m in mask]
    if exclude_outliers:
        flagged = flag_outliers(frame, loss_col="loss", status_col="status", initial_loss_col="initial_loss")
        fl = flagged["outlier"].to_numpy(bool)
        for i in np.flatnonzero(fl):
            reasons[i] = "; ".join(x for x in (reasons[i], flagged["outlier_reason"].iloc[i]) if x)
        mask = mask | fl
    else:
        bad = ~np.isfinite(frame["loss"].to_numpy(float)) & ~mask
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"loss_col={fd.columns.get('loss', 'loss')!r}: non-finite loss {show(frame['loss'].iloc[i])} at row "
                f"{show(frame.index[i])} ({int(bad.sum())} in all); use exclude_outliers=True to drop diverged runs "
                "or exclude= to drop them by hand"
            )
    kept = frame[~mask]
    return PreparedData(frame=kept, excluded=tuple(_excluded_points(frame, mask, reasons)), source=fd.source)


def _check_enough(frame: pd.DataFrame, n_excluded: int) -> None:
    n = len(frame)
    if n < N_FREE_PARAMS:
        raise ValueError(
            f"data: the parametric fit has {N_FREE_PARAMS} parameters and needs at least {N_FREE_PARAMS} points; "
            f"found {n} (after excluding {n_excluded})"
        )
    for col, what in (("N", "parameter counts"), ("D", "token counts")):
        if frame[col].nunique() < 2:
            raise ValueError(
                f"data: column {col} ({what}) needs at least 2 distinct values to fit its exponent; "
                f"found {frame[col].nunique()}"
            )


def _init_thetas(init: Any) -> np.ndarray:
    items = init if isinstance(init, (list, tuple)) and init and not isinstance(init[0], (int, float)) else [init]
    rows = []
    for it in items:
        if isinstance(it, ParametricFit):
            rows.append(it.log_params)
        elif isinstance(it, Mapping):
            missing = [k for k in ("E", "A", "B", "alpha", "beta") if k not in it]
            if missing:
                raise ValueError(f"init: mapping is missing key(s) {missing}; expected E, A, B, alpha, beta")
            vals = [float(it[k]) for k in ("A", "B", "E")]
            if not all(v > 0 and math.isfinite(v) for v in vals):
                raise ValueError(f"init: E, A, B must be positive and finite; found {dict(it)}")
            rows.append(np.array([math.log(vals[0]), math.log(vals[1]), math.log(vals[2]), float(it["alpha"]), float(it["beta"])]))
        else:
            raise TypeError(
                f"init: expected a ParametricFit, a mapping with E, A, B, alpha, beta, or a list of those; "
                f"found {type(it).__name__}"
            )
    return np.vstack(rows)


def _solve(
    lN: np.ndarray,
    lD: np.ndarray,
    lL: np.ndarray,
    *,
    method: str,
    delta: float,
    starts: np.ndarray | None = None,
    n_best: int = DEFAULT_N_BEST_STARTS,
) -> SolveResult:
    """Run one solver on log arrays; ``starts`` are rows of (log A, log B, log E, alpha, beta)."""
    if method == "lbfgs":
        return _solve_lbfgs(lN, lD, lL, delta=delta, starts=starts, n_best=n_best)
    exps = None if starts is None else [tuple(s[3:5]) for s in np.atleast_2d(starts)]
    return _solve_vpnls(lN, lD, np.exp(lL), exponents0=exps, delta=delta)


def solve(
    lN: np.ndarray,
    lD: np.ndarray,
    lL: np.ndarray,
    *,
    method: str = "lbfgs",
    delta: float = 1e-3,
    starts: np.ndarray | None = None,
    n_best: int = DEFAULT_N_BEST_STARTS,
) -> SolveResult:
    """Array-level solver for callers that manage their own data (benchmarks, other analyses).

    Runs with BLAS limited to one thread; loops that call the solver many times
    should hold ``single_thread_blas()`` themselves and call ``_solve``.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, found {method!r}")
    with single_thread_blas():
        return _solve(lN, lD, lL, method=method, delta=delta, starts=starts, n_best=n_best)


def _make_fit(sol: SolveResult, lN, lD, lL, *, method: str, delta: float, excluded) -> ParametricFit:
    la, lb, le, al, be = sol.theta
    huber = huber_log_objective(sol.theta, lN, lD, lL, delta)[0] if np.all(np.isfinite(sol.theta[3:])) else math.nan
    return ParametricFit(
        E=float(np.exp(le)),
        A=float(np.exp(la)),
        B=float(np.exp(lb)),
        alpha=float(al),
        beta=float(be),
        objective=float(sol.objective),
        converged=bool(sol.converged),
        n_iter=int(sol.n_iter),
        message=sol.message,
        n_points=int(lN.size),
        method=method,
        huber_delta=float(delta),
        huber_objective=float(huber),
        n_starts=int(sol.n_starts),
        excluded=tuple(excluded),
    )


def _validate_options(method: str, huber_delta: float, n_best_starts: int, outlier_threshold: Any) -> None:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, found {method!r}")
    if not (isinstance(huber_delta, (int, float)) and not isinstance(huber_delta, bool)
            and math.isfinite(huber_delta) and huber_delta > 0):
        raise ValueError(f"huber_delta: expected a positive finite number, found {huber_delta!r}")
    if not isinstance(n_best_starts, (int, np.integer)) or isinstance(n_best_starts, bool) or n_best_starts < 1:
        raise ValueError(f"n_best_starts: expected an int >= 1, found {n_best_starts!r}")
    if outlier_threshold is not None and not (
        isinstance(outlier_threshold, (int, float)) and math.isfinite(outlier_threshold) and outlier_threshold > 0
    ):
        raise ValueError(f"outlier_threshold: expected a positive finite number or None, found {outlier_threshold!r}")


def fit_parametric(
    data: pd.DataFrame | str | Any,
    *,
    n_col: str = "N",
    d_col: str = "D",
    loss_col: str = "loss",
    c_col: str | None = None,
    method: str = "lbfgs",
    huber_delta: float = 1e-3,
    exclude: Any = None,
    exclude_outliers: bool = True,
    outlier_threshold: float | None = DEFAULT_Z_THRESHOLD,
    init: Any = None,
    n_best_starts: int = DEFAULT_N_BEST_STARTS,
) -> ParametricFit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta to a DataFrame, CSV or results.json.

    ``exclude``: row labels or a boolean mask of rows to leave out. With
    ``exclude_outliers`` (default) failed/diverged runs (status, non-finite loss,
    loss above initial loss, rows already marked ``outlier``) are left out, and
    after a first fit so are points whose robust residual |z| exceeds
    ``outlier_threshold`` (None disables that test), followed by one refit.
    Everything left out is listed in ``fit.excluded`` with its reason.
    ``init`` (a ParametricFit, or a mapping with E, A, B, alpha, beta, or a list)
    replaces the start grid, e.g. to warm-start from an earlier fit.
    """
    _validate_options(method, huber_delta, n_best_starts, outlier_threshold)
    fd = load_fit_data(data, n_col=n_col, d_col=d_col, loss_col=loss_col, c_col=c_col)
    prepared = prepare_points(fd, exclude=exclude, exclude_outliers=exclude_outliers)
    return _fit_prepared(
        prepared, method=method, delta=huber_delta, init=init, n_best=n_best_starts,
        outlier_threshold=outlier_threshold if exclude_outliers else None,
    )[0]


def _fit_prepared(
    prepared: PreparedData,
    *,
    method: str,
    delta: float,
    init: Any,
    n_best: int,
    outlier_threshold: float | None,
) -> tuple[ParametricFit, PreparedData]:
    """Fit, then (optionally) drop extreme robust residuals once and refit."""
    _check_enough(prepared.frame, len(prepared.excluded))
    starts = None if init is None else _init_thetas(init)
    with single_thread_blas():
        return _fit_prepared_inner(prepared, method=method, delta=delta, starts=starts, n_best=n_best,
                                   outlier_threshold=outlier_threshold)


#: Residual outliers are evidence against a run, not proof: at most this share of all points is dropped.
MAX_EXCLUDED_SHARE = 0.10
#: Points the parametric fit keeps at least (5 parameters need slack to be pinned down).
MIN_POINTS_KEPT = 8


def cap_exclusions(extreme: np.ndarray, z: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Limit residual exclusions, keeping the most extreme ones.

    Per budget (``groups``): at most one run of a budget with 5 or fewer runs, and never
    fewer than 3 runs left (a parabola needs 3). Overall: at most 10% of the points (at
    least one), and never fewer than 8 points left.
    """
    extreme = np.asarray(extreme, bool).copy()
    order = np.argsort(-np.abs(np.where(extreme, z, 0.0)), kind="stable")
    n = extreme.size
    budget_left = max(0, min(max(1, int(MAX_EXCLUDED_SHARE * n)), n - MIN_POINTS_KEPT))
    size: dict[Any, int] = {}
    if groups is not None:
        labels, counts = np.unique(groups, return_counts=True)
        size = dict(zip(labels.tolist(), counts.tolist()))
    dropped: dict[Any, int] = {}
    keep = np.zeros(n, bool)
    for i in order:
        if not extreme[i] or budget_left <= 0:
            break
        if groups is not None:
            g = groups[i].item() if isinstance(groups[i], np.generic) else groups[i]
            k = size[g]
            allowed = min(1 if k <= 5 else k, k - 3)
            if dropped.get(g, 0) >= allowed:
                continue
            dropped[g] = dropped.get(g, 0) + 1
        keep[i] = True
        budget_left -= 1
    return keep


def _fit_prepared_inner(
    prepared: PreparedData,
    *,
    method: str,
    delta: float,
    starts: np.ndarray | None,
    n_best: int,
    outlier_threshold: float | None,
) -> tuple[ParametricFit, PreparedData]:
    lN, lD, lL = prepared.logs
    sol = _solve(lN, lD, lL, method=method, delta=delta, starts=starts, n_best=n_best)
    fit = _make_fit(sol, lN, lD, lL, method=method, delta=delta, excluded=prepared.excluded)
    if outlier_threshold is None or not np.all(np.isfinite(sol.theta[3:])):
        return fit, prepared
    z = robust_z(fit.residuals(prepared.frame["N"], prepared.frame["D"], prepared.frame["loss"]),
                 min_scale=DEFAULT_MIN_SCALE)
    extreme = np.isfinite(z) & (np.abs(z) > outlier_threshold)
    groups = prepared.frame["budget"].to_numpy() if "budget" in prepared.frame.columns else None
    extreme = cap_exclusions(extreme, z, groups)
    if not extreme.any():
        return fit, prepared
    reasons = [f"robust residual z={zi:+.1f} vs the parametric fit (|z| > {outlier_threshold:g})" for zi in z]
    newly = _excluded_points(prepared.frame, extreme, reasons)
    prepared = PreparedData(
        frame=prepared.frame[~extreme], excluded=prepared.excluded + tuple(newly), source=prepared.source
    )
    _check_enough(prepared.frame, len(prepared.excluded))
    lN, lD, lL = prepared.logs
    # refit from the grid (and the first fit): dropping gross outliers can move the optimum far
    starts2 = chinchilla_grid() if starts is None else starts
    starts2 = np.vstack([sol.theta[None, :], starts2]) if method == "lbfgs" else starts
    sol = _solve(lN, lD, lL, method=method, delta=delta, starts=starts2, n_best=n_best + 1)
    fit = _make_fit(sol, lN, lD, lL, method=method, delta=delta, excluded=prepared.excluded)
    return fit, prepared
