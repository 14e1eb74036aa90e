"""FLOPs accounting: C = 6·N·D by default; measured per-unit FLOPs on request."""

from __future__ import annotations

FLOPS_6ND = "6ND"  # C = 6 * num_params() * D (Kaplan/Chinchilla approximation)
FLOPS_MEASURED = "measured"  # per-unit FLOPs of one forward+backward (FlopCounterMode) times D


def six_nd(num_params: float, num_tokens: float) -> float:
    return 6.0 * float(num_params) * float(num_tokens)


# ---------------------------------------------------------------------------
# measured FLOPs (torch.utils.flop_counter.FlopCounterMode)
#
# FlopCounterMode knows the CUDA attention kernels but not the fused CPU kernel
# that F.scaled_dot_product_attention dispatches to on CPU
# (aten._scaled_dot_product_flash_attention_for_cpu), so without the formulas
# below attention costs 0 FLOPs on CPU. We register torch's own SDPA formulas
# for it: forward 4·B·H·S_q·S_k·d_head (QK^T and AV), backward twice that
# (torch's convention; causal masking is not discounted, matching the CUDA count).

from typing import Any, Callable  # noqa: E402

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
