"""A known loss law in place of training, so the whole pipeline runs in seconds."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flops_fit.planning import Experiment
    from flops_fit.training.store import RunRecord


@dataclass(frozen=True)
class MockLaw:
    """L(N, D) = E + A/N^alpha + B/D^beta with multiplicative log-normal noise.

    Defaults are the Chinchilla paper's fit (Hoffmann et al. 2022, Approach 3).
    """

    E: float = 1.69
    A: float = 406.4
    B: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28
    noise: float = 0.01  # standard deviation of log-loss noise

    def __post_init__(self) -> None:
        for name in ("E", "A", "B", "alpha", "beta", "noise"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"MockLaw.{name}: expected a finite number >= 0, found {v!r}")
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError(
                f"MockLaw: expected alpha > 0 and beta > 0, found alpha={self.alpha}, beta={self.beta}"
            )

    def loss(self, num_params: float, num_tokens: float) -> float:
        """Noise-free loss."""
        return self.E + self.A / num_params**self.alpha + self.B / num_tokens**self.beta

    def sample(self, num_params: float, num_tokens: float, *, seed: int, key: str) -> float:
        """Noisy loss, seeded by (seed, key): reproducible and independent of run order."""
        clean = self.loss(num_params, num_tokens)
        if self.noise == 0:
            return clean
        digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        rng = np.random.default_rng([int(seed), digest])
        return float(clean * math.exp(self.noise * rng.standard_normal()))

    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a."""
        return self.beta / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def optimal_params(self, compute: float) -> float:
        """Analytic compute-optimal N under C = 6ND."""
        return self.G * (compute / 6.0) ** self.a

    def optimal_tokens(self, compute: float) -> float:
        return compute / (6.0 * self.optimal_params(compute))

    def to_dict(self) -> dict:
        return asdict(self)


def mock_run(exp: "Experiment", law: MockLaw, seed: int, design: dict | None = None) -> "RunRecord":
    """The mock engine's run function: a seeded draw from `law` at the experiment's (N, D). Under a
    trunk-and-branch `design` the loss is the same (a WSD cooldown branch matches the separate run, Hägele et
    al. 2024) and the record says what the branch itself cost."""
    import time

    from flops_fit.training.store import STATUS_COMPLETED, RunRecord

    t0 = time.perf_counter()
    loss = law.sample(exp.num_params, exp.num_tokens, seed=seed, key=exp.experiment_id)
    return RunRecord.of(
        exp,
        final_loss=loss,
        status=STATUS_COMPLETED,
        flops=exp.flops,
        flops_method="6ND",
        units="mock",
        wall_time_s=time.perf_counter() - t0,
        details={"mock_law": law.to_dict(), "seed": seed, **_branch_details(exp, design)},
    )


def _branch_details(exp: "Experiment", design: dict | None) -> dict:
    br = (design or {}).get("branches", {}).get(exp.experiment_id)
    if br is None:
        return {}
    return {"trunk_id": br["trunk_id"], "forked_at_step": br["fork_step"], "forked_at_units": br["fork_units"],
            "branch_units": br["branch_units"], "branch_flops": br["flops"]}
