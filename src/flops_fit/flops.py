"""FLOPs accounting: C = 6·N·D by default; measured per-unit FLOPs on request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FLOPS_6ND = "6ND"  # C = 6 * num_params() * D (Kaplan/Chinchilla approximation)
FLOPS_MEASURED = "measured"  # per-unit FLOPs of one forward+backward (FlopCounterMode) times D


def six_nd(num_params: float, num_tokens: float) -> float:
    return 6.0 * float(num_params) * float(num_tokens)


@dataclass(frozen=True)
class CostModel:
    """Training FLOPs per data unit as a function of N: ``c * N**b``, so C = c·N^b·D.

    6·N (c=6, b=1) is the Chinchilla count. A sweep planned by measured FLOPs has
    its own: fitted to its planned runs (each D = C / measured FLOPs per unit), it
    turns an N_opt into the D_opt that spends exactly C, and moves the
    compute-optimal allocation of L(N, D) to where the real cost puts it.
    """

    c: float = 6.0
    b: float = 1.0
    accounting: str = FLOPS_6ND
    #: largest |relative error| of c·N^b against the runs it was fitted to (0 for 6·N)
    max_rel_error: float = 0.0

    def per_unit(self, n: Any) -> Any:
        import numpy as np

        return self.c * np.asarray(n, dtype=float) ** self.b

    def units(self, compute: Any, n: Any) -> Any:
        """D that spends `compute` at size `n`."""
        import numpy as np

        with np.errstate(all="ignore"):
            return np.asarray(compute, dtype=float) / self.per_unit(n)

    def parametric_optimum(self, compute: Any, E: Any, A: Any, B: Any, alpha: Any, beta: Any) -> tuple[Any, Any]:
        """argmin over N of E + A/N^alpha + B/D^beta with D = C / (c N^b): closed form,
        N_opt = G (C/c)^a with a = beta / (alpha + b beta), G = (alpha A / (b beta B))^(1/(alpha + b beta))."""
        import numpy as np

        with np.errstate(all="ignore"):
            s = alpha + self.b * beta
            G = np.exp(np.log(alpha * A / (self.b * beta * B)) / s)
            n = G * (np.asarray(compute, dtype=float) / self.c) ** (beta / s)
            return n, self.units(compute, n)

    def parametric_exponent(self, alpha: Any, beta: Any) -> Any:
        """a in N_opt ∝ C^a for L(N, D) under this cost."""
        return beta / (alpha + self.b * beta)

    def to_dict(self) -> dict[str, Any]:
        return {"c": self.c, "b": self.b, "accounting": self.accounting, "max_rel_error": self.max_rel_error}

    def describe(self) -> str:
        if self.accounting == FLOPS_6ND:
            return "C = 6·N·D"
        return (f"C = {self.c:.4g}·N^{self.b:.4f}·D (measured FLOPs per data unit, fitted to the planned runs "
                f"within {100 * self.max_rel_error:.2g}%)")


SIX_ND = CostModel()


def fit_cost_model(n: Any, d: Any, compute: Any) -> CostModel:
    """c·N^b through the runs' own (N, D, C) by least squares in log space (measured-FLOPs sweeps)."""
    import numpy as np

    n, d, compute = (np.asarray(v, dtype=float) for v in (n, d, compute))
    ok = np.isfinite(n) & np.isfinite(d) & np.isfinite(compute) & (n > 0) & (d > 0) & (compute > 0)
    if ok.sum() < 2 or np.unique(n[ok]).size < 2:
        raise ValueError("flops_accounting: a measured cost model needs runs at 2 or more sizes with N, D and C")
    x, y = np.log(n[ok]), np.log(compute[ok] / d[ok])
    b, log_c = np.polyfit(x, y, 1)
    err = float(np.max(np.abs(np.expm1(log_c + b * x - y))))
    return CostModel(c=float(np.exp(log_c)), b=float(b), accounting=FLOPS_MEASURED, max_rel_error=err)


# ---------------------------------------------------------------------------
# measured FLOPs (torch.utils.flop_counter.FlopCounterMode)
#
# FlopCounterMode knows the CUDA attention kernels but not the fused CPU kernel
# that F.scaled_dot_product_attention dispatches to on CPU
# (aten._scaled_dot_product_flash_attention_for_cpu), so without the formulas
# below attention costs 0 FLOPs on CPU. We register torch's own SDPA formulas
# for it: forward 4·B·H·S_q·S_k·d_head (QK^T and AV), backward twice that
# (torch's convention; causal masking is not discounted, matching the CUDA count).

from typing import Callable  # noqa: E402

_SDPA_REGISTERED = False


def register_cpu_sdpa_flops() -> None:
    """Teach FlopCounterMode the CPU fused-attention ops (idempotent)."""
    global _SDPA_REGISTERED
    if _SDPA_REGISTERED:
        return
    import torch
    from torch.utils import flop_counter as fc

    fwd = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None and fwd not in fc.flop_registry:

        @fc.register_flop_formula(fwd, get_raw=True)
        def _cpu_sdpa_fwd(query, key, value, *args, out_val=None, **kwargs) -> int:  # noqa: ANN001
            return fc.sdpa_flop_count(query.shape, key.shape, value.shape)

    if bwd is not None and bwd not in fc.flop_registry:

        @fc.register_flop_formula(bwd, get_raw=True)
        def _cpu_sdpa_bwd(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:  # noqa: ANN001
            return fc.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)

    _SDPA_REGISTERED = True


def count_flops(fn: Callable[[], Any]) -> int:
    """Total FLOPs of everything `fn` runs (forward and any backward it calls)."""
    from torch.utils.flop_counter import FlopCounterMode

    register_cpu_sdpa_flops()
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def measured_flops_per_unit(step: Callable[[], Any], units: float) -> float:
    """FLOPs of one forward+backward (`step`) divided by the data units it processed.

    `step` must run the forward and call backward; the caller zeroes the
    gradients afterwards. Multiply by D for the run's measured compute.
    """
    if not units > 0:
        raise ValueError(f"units: expected a positive number of data units, found {units!r}")
    return count_flops(step) / float(units)
