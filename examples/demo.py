"""The README demo: an IsoFLOP sweep on built-in data, then the Chinchilla table.

Mock mode for now (a seeded Chinchilla loss law): runs in seconds.
"""

from __future__ import annotations

import argparse

import flops_fit as ff


class TinyTransformerShape:
    """Parameter count of a 4-layer transformer of width d_model (12·L·d² + vocab·d)."""

    def __init__(self, d_model: int, n_layers: int = 4, vocab_size: int = 32000) -> None:
        self.d_model, self.n_layers, self.vocab_size = d_model, n_layers, vocab_size

    def num_params(self) -> int:
        return 12 * self.n_layers * self.d_model**2 + self.vocab_size * self.d_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output-dir", default="outputs/demo")
    args = p.parse_args()
    result = ff.find_optimal(
        TinyTransformerShape,
        "d_model",
        min_flops=1e17,
        max_flops=1e21,
        num_budgets=5,
        mode="mock",
        output_dir=args.output_dir,
        size_max=1 << 20,
    )
    print(result.summary())
    print(result.chinchilla_table())
    result.plot()
    print(f"\nfiles: {args.output_dir}/{{sweep.json,results.json,analysis/scaling_laws.json,plots/*.png}}")


if __name__ == "__main__":
    main()
