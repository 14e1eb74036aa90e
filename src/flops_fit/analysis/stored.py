"""Bootstrap samples kept in scaling_laws.json, so a reload (``Result.load``, ``ff-visualize``)
reuses them instead of refitting 1,000 resamples twice over.

The file is untrusted input: samples are reused only when the key (a hash of the analysed
table and of every option that changes the resamples) matches the table being analysed now
and the stored full-data fit equals the one just recomputed; the arrays are checked for
shape and finiteness. Anything else is ignored and the bootstrap runs again.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from flops_fit.analysis.bootstrap import BootstrapResult, _target_values
from flops_fit.analysis.isoflop import IsoFLOPBootstrap
from flops_fit.analysis.parametric import PARAM_NAMES, ParametricFit

#: Bump when a change to the resampling or the refit would change the samples of the same inputs.
SAMPLES_VERSION = 3  # 3: runs off every IsoFLOP budget resampled as one stratum
_KEY_COLUMNS = ("compute_budget", "N", "D", "loss", "status", "initial_loss", "extra")


def samples_key(table: pd.DataFrame, options: Mapping[str, Any]) -> str:
    """Hash of what the bootstrap samples depend on: the runs (in canonical order) and the options."""
    cols = [c for c in _KEY_COLUMNS if c in table.columns]
    rows = [[repr(v) for v in row] for row in table[cols].itertuples(index=False, name=None)]
    opts = {k: options[k] for k in sorted(options) if k != "n_jobs"}
    blob = json.dumps({"v": SAMPLES_VERSION, "cols": cols, "rows": rows, "options": opts}, sort_keys=True,
                      default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def samples_to_dict(key: str, boot: BootstrapResult | None, iso: IsoFLOPBootstrap | None) -> dict[str, Any]:
    d: dict[str, Any] = {"key": key, "version": SAMPLES_VERSION}
    if boot is not None:
        d["approach_3"] = {
            "param_names": list(PARAM_NAMES), "fit": boot.fit.log_params.tolist(), "samples": boot.samples.tolist(),
            "n_resamples": boot.n_resamples, "n_failed": boot.n_failed, "n_not_converged": boot.n_not_converged,
            "n_restarted": boot.n_restarted, "stratify_col": boot.stratify_col,
        }
    if iso is not None:
        d["approach_2"] = {
            "n_log_k": iso.n_log_k.tolist(), "n_exponent": iso.n_exponent.tolist(),
            "loss_params": iso.loss_params.tolist(), "budgets": iso.budgets.tolist(),
            "budget_n_opt": iso.budget_n_opt.tolist(), "n_resamples": iso.n_resamples, "n_failed": iso.n_failed,
        }
    return d


def _array(v: Any, shape_tail: tuple[int, ...]) -> np.ndarray | None:
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        return None
    if a.ndim != 1 + len(shape_tail) or a.shape[1:] != shape_tail or not np.all(np.isfinite(a)):
        return None
    return a


def _count(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def reuse_parametric(stored: Mapping[str, Any] | None, key: str, fit: ParametricFit, *, n_resamples: int,
                     confidence: float, seed: int) -> BootstrapResult | None:
    """The stored Approach 3 bootstrap when it belongs to exactly this table, options and fit; else None."""
    if not isinstance(stored, Mapping) or stored.get("key") != key or not isinstance(stored.get("approach_3"), Mapping):
        return None
    s = stored["approach_3"]
    theta = _array(s.get("fit"), ())
    samples = _array(s.get("samples"), (len(PARAM_NAMES),))
    counts = [_count(s.get(k)) for k in ("n_resamples", "n_failed", "n_not_converged", "n_restarted")]
    if theta is None or theta.shape != (5,) or samples is None or None in counts or counts[0] != n_resamples:
        return None
    if not np.allclose(theta, fit.log_params, rtol=1e-9, atol=1e-12):  # not the fit just made: refit
        return None
    strat = s.get("stratify_col")
    if strat is not None and not isinstance(strat, str):
        return None
    return BootstrapResult(
        fit=fit, samples=samples, targets=np.zeros(0), target_samples=_target_values(samples, np.zeros(0)),
        n_resamples=counts[0], n_failed=counts[1], n_not_converged=counts[2], confidence=float(confidence),
        seed=int(seed), method=fit.method, stratify_col=strat, n_restarted=counts[3],
    )


def reuse_isoflop(stored: Mapping[str, Any] | None, key: str, *, n_resamples: int, seed: int,
                  budgets: np.ndarray) -> IsoFLOPBootstrap | None:
    """The stored Approach 2 bootstrap when it belongs to exactly this table and options; else None."""
    if not isinstance(stored, Mapping) or stored.get("key") != key or not isinstance(stored.get("approach_2"), Mapping):
        return None
    s = stored["approach_2"]
    logk, a = _array(s.get("n_log_k"), ()), _array(s.get("n_exponent"), ())
    lp = _array(s.get("loss_params"), (3,))
    b = _array(s.get("budgets"), ())
    if b is None or logk is None or a is None or lp is None:
        return None
    vert = _array(s.get("budget_n_opt"), (b.size,))
    n_res, n_failed = _count(s.get("n_resamples")), _count(s.get("n_failed"))
    k = logk.size
    if vert is None or a.size != k or lp.shape[0] != k or vert.shape[0] != k or n_res != n_resamples or n_failed is None:
        return None
    if b.shape != budgets.shape or not np.allclose(b, budgets, rtol=1e-12, atol=0):
        return None
    if k + n_failed != n_res or k == 0 or not all(math.isfinite(x) for x in b):
        return None
    return IsoFLOPBootstrap(logk, a, lp, n_res, n_failed, int(seed), budgets=b, budget_n_opt=vert)
