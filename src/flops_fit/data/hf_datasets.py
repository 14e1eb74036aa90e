"""A Hugging Face ``datasets.Dataset`` / ``IterableDataset`` as sweep data, without glue.

Rows become dicts of tensors (``with_format("torch")``) with the model's input under
``input_ids`` and the target under ``labels``: ``label_column`` names the target column
when it has another name. A causal-LM dataset of token windows without labels (the Hugging
Face convention, where the model shifts) gets its labels here, shifted once: position t's
target is token t+1 — the library's causal loss expects exactly that, and the model is
never handed labels to shift again. The dataset's own fingerprint identifies it in the plan.
"""

from __future__ import annotations

from typing import Any

import torch

INPUT = "input_ids"


def adapt(dataset: Any, label_column: str | None, objective: str | None, argument: str) -> tuple[Any, dict]:
    """(a torch dataset of {"input_ids", "labels"} rows, what identifies it)."""
    columns = list(getattr(dataset, "column_names", None) or [])
    if INPUT not in columns:
        raise ValueError(f"{argument}: a datasets.{type(dataset).__name__} needs an {INPUT!r} column (the model's "
                         f"input), found columns {columns}")
    if label_column is not None and label_column not in columns:
        raise ValueError(f"data_options: label_column={label_column!r} is not a column of the {argument}; columns "
                         f"are {columns}")
    target = label_column or ("labels" if "labels" in columns else None)
    if target is None and objective != "causal_lm":
        raise ValueError(f"{argument}: no 'labels' column, and the objective is {objective!r}: name the target with "
                         "data_options={'label_column': ...} (only a causal LM's labels can be made from the inputs)")
    if target == INPUT:
        raise ValueError(f"data_options: label_column={target!r} is the input itself; for a causal LM leave it out "
                         "and the labels are the inputs shifted by one")
    keep = [INPUT] + ([target] if target else [])
    ds = dataset.select_columns(keep).with_format("torch")
    rows = _Rows(ds, target) if hasattr(ds, "__len__") else _IterRows(ds, target)
    ident = {"hf_dataset": getattr(dataset, "_fingerprint", None) or repr(dataset)[:200], "label_column": target,
             "shifted_here": target is None}
    return rows, ident


def _row(row: dict, target: str | None) -> dict[str, torch.Tensor]:
    ids = row[INPUT]
    if target is None:  # token windows: the target of position t is token t+1
        return {INPUT: ids[:-1], "labels": ids[1:]}
    return {INPUT: ids, "labels": row[target]}


class _Rows(torch.utils.data.Dataset):
    def __init__(self, ds: Any, target: str | None) -> None:
        self.ds, self.target = ds, target

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return _row(self.ds[int(i)], self.target)


class _IterRows(torch.utils.data.IterableDataset):
    def __init__(self, ds: Any, target: str | None) -> None:
        self.ds, self.target = ds, target

    def __iter__(self):
        return (_row(r, self.target) for r in self.ds)
