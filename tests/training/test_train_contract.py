"""check_data_contract: each bad dataset/loss/model gets an error naming the argument and what was found."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ff_train_helpers import PairData, StreamData, TinyLM, TinyMLP, TokenData, labels_loss, lm_loss
from flops_fit.training.local import check_data_contract, infer_data_info
from flops_fit.training.datautil import DataSource
from flops_fit.training.trainer import TrainConfig

CFG = TrainConfig(batch_size=4)


def check(dataset, loss_fn=lm_loss, model=TinyLM, **kw):
    return check_data_contract(model, "d_model", {}, 8, dataset, loss_fn, CFG, **kw)


def test_token_dict_data_counts_tokens():
    info = check(TokenData(64, seq_len=8))
    assert (info.units, info.units_per_sample, info.seq_len) == ("tokens", 8.0, 8)
    assert info.dataset_units == 64 * 8
    assert info.loss_signature == "(outputs, batch)"
    assert info.batch_format == "dict"


def test_pair_data_with_labels_loss_counts_samples():
    info = check_data_contract(TinyMLP, "width", {}, 8, PairData(32), labels_loss, CFG)
    assert (info.units, info.units_per_sample, info.loss_signature) == ("samples", 1.0, "(outputs, labels)")
    assert info.batch_format == "pair"


def test_units_per_sample_override_and_iterable():
    info = check(StreamData(32), units_per_sample=5)
    assert info.units_per_sample == 5.0 and info.units_override
    assert info.dataset_units is None and info.num_samples is None


def test_attention_mask_excludes_padding():
    ids = torch.randint(0, 16, (8, 6))
    mask = torch.ones(8, 6, dtype=torch.long)
    mask[:, 4:] = 0  # two padding positions per sequence

    class Masked(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"input_ids": ids[i], "labels": ids[i], "attention_mask": mask[i]}

    info = infer_data_info(DataSource(Masked()))
    assert info.has_mask and info.units_per_sample == 4.0


def test_dataloader_accepted_uses_its_dataset():
    info = check(DataLoader(TokenData(32), batch_size=CFG.batch_size))
    assert info.num_samples == 32
    info = check(DataLoader(TokenData(32), batch_size=None))  # a carrier of a collate_fn, no batch size of its own
    assert info.num_samples == 32
    with pytest.raises(ValueError, match=r"dataset: a DataLoader with batch_size=7 was given, but the sweep trains at "
                                         r"TrainConfig\.batch_size=\d+"):
        check(DataLoader(TokenData(32), batch_size=7))  # never silently replaced


def test_not_a_dataset():
    with pytest.raises(TypeError, match=r"dataset: expected a torch Dataset.*found int"):
        check(123)


def test_empty_dataset():
    with pytest.raises(ValueError, match=r"dataset: expected at least one sample, found an empty dataset"):
        check(TensorDataset(torch.zeros(0, 4, dtype=torch.long)))


def test_batch_model_cannot_take():
    floats = TensorDataset(torch.randn(8, 3), torch.randint(0, 4, (8,)))  # 3 features, the MLP wants 8
    with pytest.raises(ValueError, match=r"dataset: the model \(model_cls=TinyMLP\) cannot take a batch.*float32\[2, 3\]"):
        check_data_contract(TinyMLP, "width", {}, 8, floats, labels_loss, CFG)


def test_loss_not_scalar():
    with pytest.raises(ValueError, match=r"loss_fn: expected a scalar tensor.*shape \[2, 8\]"):
        check(TokenData(8), loss_fn=lambda out, b: out.sum(-1))


def test_loss_not_finite():
    with pytest.raises(ValueError, match=r"loss_fn: expected a finite loss.*found nan"):
        check(TokenData(8), loss_fn=lambda out, b: out.sum() * float("nan"))


def test_loss_not_differentiable():
    with pytest.raises(ValueError, match=r"loss_fn: expected a loss differentiable.*requires_grad=False"):
        check(TokenData(8), loss_fn=lambda out, b: lm_loss(out, b).detach())


def test_loss_not_a_tensor():
    with pytest.raises(TypeError, match=r"loss_fn: expected a scalar torch.Tensor, found float"):
        check(TokenData(8), loss_fn=lambda out, b: float(lm_loss(out, b)))


def test_loss_raises_is_reported():
    with pytest.raises(ValueError, match=r"loss_fn: raised KeyError: 'target'"):
        check(TokenData(8), loss_fn=lambda out, b: b["target"])


def test_loss_not_callable():
    with pytest.raises(TypeError, match=r"loss_fn: expected a callable.*found str"):
        check(TokenData(8), loss_fn="ce")


def test_model_cannot_be_built():
    with pytest.raises(TypeError, match=r"model_cls: could not build TinyLM\(d_model=8"):
        check_data_contract(TinyLM, "d_model", {"colour": 1}, 8, TokenData(8), lm_loss, CFG)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"lr": -1.0}, r"TrainConfig.lr: expected a positive finite number, found -1.0"),
        ({"batch_size": 0}, r"TrainConfig.batch_size: expected a positive integer, found 0"),
        ({"betas": (0.9, 1.5)}, r"TrainConfig.betas"),
        ({"warmup": 2.0}, r"TrainConfig.warmup: expected 'N' or a fraction"),
        ({"dtype": "fp16"}, r"TrainConfig.dtype: expected 'auto', 'fp32' or 'bf16', found 'fp16'"),
        ({"lr_scaling": "width"}, r"TrainConfig.lr_scaling"),
        ({"compile": "fast"}, r"TrainConfig.compile: expected True, False or one of \['default', 'reduce-overhead'"),
    ],
)
def test_train_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


def test_allow_repeat_false_refuses_a_too_small_dataset_before_training(tmp_path):
    """Every run that would repeat the data is known from the plan: refuse at once, naming the first."""
    import flops_fit as ff
    from torch.utils.data import TensorDataset

    class Tiny(torch.nn.Module):
        def __init__(self, d_model: int) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, d_model), torch.nn.Linear(d_model, 1)

        def forward(self, x):
            return self.b(self.a(x))

        def num_params(self) -> int:
            return sum(p.numel() for p in self.parameters())

    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    with pytest.raises(ValueError, match=r"dataset: run C1e\+06-d_model\d+ needs [\d.e+]+ units but the training "
                                         r"split holds only 56 .* and allow_repeat=False"):
        ff.find_optimal(Tiny, "d_model", dataset=data, loss_fn=lambda out, b: ((out - b[1]) ** 2).mean(),
                        compute_budgets=[1e6, 3e6], allow_repeat=False, output_dir=tmp_path, progress=False,
                        size_min=2, size_max=200, num_model_sizes=3, n_bootstrap=0,
                        train_config={"batch_size": 8, "val_units": 8})
    assert not (tmp_path / "results.json").exists()
