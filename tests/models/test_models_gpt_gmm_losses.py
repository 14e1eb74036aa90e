"""GPT details, the GMM model's per-set normalisation, synthetic data and the losses."""

from __future__ import annotations

import pytest
import torch

import flops_fit.models as M
from flops_fit.data.synthetic import GaussianMixtureSets, SyntheticImages
from flops_fit.models.gpt import GPT
from flops_fit.models.losses import (
    causal_lm_loss,
    classification_loss,
    gmm_assignments_loss,
    gmm_centers_loss,
    masked_lm_loss,
)

# ----------------------------------------------------------------------------- GPT


@pytest.mark.parametrize("umup", [False, True])
def test_gpt_is_causal(umup):
    torch.manual_seed(0)
    model = GPT(32, n_layers=2, vocab_size=20, max_seq_len=10, umup=umup).eval()
    ids = torch.randint(0, 20, (2, 10))
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 20
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_gpt_argument_errors():
    with pytest.raises(ValueError, match="d_model must be a multiple of head_dim=16.*got d_model=24"):
        GPT(24)
    with pytest.raises(TypeError, match="n_layers must be an int, got float"):
        GPT(32, n_layers=2.0)
    with pytest.raises(ValueError, match="dropout must be in \\[0, 1\\), got 1.0"):
        GPT(32, dropout=1.0)
    model = GPT(32, n_layers=1, max_seq_len=8)
    with pytest.raises(ValueError, match="sequence length 9 exceeds max_seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids must be a LongTensor \\[batch, seq\\], got \\(8,\\)"):
        model(torch.zeros(8, dtype=torch.long))


def test_gpt_initial_loss_is_near_uniform():
    torch.manual_seed(0)
    for umup in (False, True):
        model = GPT(64, n_layers=2, vocab_size=256, max_seq_len=32, umup=umup)
        ids = torch.randint(0, 256, (4, 32))
        labels = torch.roll(ids, -1, dims=1)
        loss = causal_lm_loss(model(ids), {"input_ids": ids, "labels": labels}).item()
        assert abs(loss - torch.log(torch.tensor(256.0)).item()) < 0.3, (umup, loss)


def test_umup_param_groups_scale_lr_with_width():
    """u-μP: hidden weights get lr / sqrt(fan_in); standard: decay only on matrices."""
    lr = 1.0
    for d in (32, 128):
        model = GPT(d, n_layers=2, umup=True)
        groups = model.optimizer_param_groups(lr, weight_decay=0.1)
        by_param = {id(g["params"][0]): g["lr"] for g in groups}
        fc = model.blocks[0].mlp.fc.weight  # fan_in d, inside a depth-2 stack
        assert by_param[id(fc)] == pytest.approx(lr / d**0.5 / 2**0.5)
        assert by_param[id(model.lm_head.weight)] == pytest.approx(lr)  # "output" type
    standard = GPT(32, n_layers=1).optimizer_param_groups(1e-3, weight_decay=0.1)
    assert all(p.dim() >= 2 for p in standard[0]["params"]) and standard[0]["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in standard[1]["params"]) and standard[1]["weight_decay"] == 0.0


def test_umup_activations_are_unit_scaled_across_widths():
    torch.manual_seed(0)
    stds = []
    for d in (32, 256):
        model = GPT(d, n_layers=2, umup=True)
        ids = torch.randint(0, 256, (4, 32))
        x = model.tok_emb(ids)
        for block in model.blocks:
            x = block(x)
        stds.append(x.std().item())
    assert all(0.5 < s < 2.0 for s in stds), stds


# ----------------------------------------------------------------------------- GMM


def test_gmm_centers_equivariant_to_shift_and_scale():
    """Per-set normalisation: predicting on (s·x + m) gives s·f(x) + m."""
    torch.manual_seed(0)
    model = M.create_model({"architecture": "gmm", "d_model": 32, "n_layers": 1, "dim": 3}).eval()
    x = torch.randn(2, 10, 3)
    shift, scale = torch.tensor([5.0, -3.0, 100.0]), 7.5
    with torch.no_grad():
        base = model(x)
        moved = model(x * scale + shift)
        permuted = model(x[:, torch.randperm(10)])
    assert torch.allclose(moved, base * scale + shift, atol=1e-3)
    assert not torch.allclose(permuted, base)  # outputs follow the points ...
    perm = torch.arange(9, -1, -1)
    with torch.no_grad():
        assert torch.allclose(model(x[:, perm]), base[:, perm], atol=1e-5)  # permutation-equivariant


def test_gmm_assignments_invariant_to_shift_and_scale():
    torch.manual_seed(0)
    model = M.create_model({"architecture": "gmm", "d_model": 32, "n_layers": 1, "prediction_type": "assignments", "num_clusters": 5}).eval()
    x = torch.randn(2, 10, 2)
    with torch.no_grad():
        assert torch.allclose(model(x * 3.0 - 1.0), model(x), atol=1e-4)
    assert model(x).shape == (2, 10, 5)


def test_gmm_rejects_wrong_point_dim():
    model = M.create_model({"architecture": "gmm", "d_model": 16, "n_layers": 1, "dim": 3}, device="meta")
    with pytest.raises(ValueError, match="points must be \\[batch, n_points, 3\\], got \\(2, 5, 2\\)"):
        model(torch.zeros(2, 5, 2))


# ----------------------------------------------------------------------------- data


def test_gaussian_mixture_sets_are_seeded_and_structured():
    data = GaussianMixtureSets(num_clusters=3, dim=2, points_per_set=50, snr=10.0, seed=4, length=100)
    a, b = data[7], GaussianMixtureSets(num_clusters=3, dim=2, points_per_set=50, snr=10.0, seed=4, length=100)[7]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = GaussianMixtureSets(num_clusters=3, dim=2, points_per_set=50, snr=10.0, seed=5, length=100)[7]
    assert not torch.equal(a["points"], other["points"])
    assert a["points"].shape == a["centers"].shape == (50, 2) and a["assignments"].shape == (50,)
    assert a["assignments"].dtype == torch.long
    # noise std = 1 / snr
    assert (a["points"] - a["centers"]).std().item() == pytest.approx(0.1, rel=0.25)
    # canonical numbering: centre of cluster k has the k-th smallest first coordinate
    firsts = [a["centers"][a["assignments"] == k][0, 0].item() for k in range(3) if (a["assignments"] == k).any()]
    assert firsts == sorted(firsts)
    assert len(data) == 100
    with pytest.raises(IndexError, match="index 100 out of range"):
        data[100]


def test_gaussian_mixture_frame_randomisation():
    data = GaussianMixtureSets(points_per_set=200, snr=1e6, seed=0, offset_std=10.0, scale_range=(0.5, 4.0))
    means = torch.stack([data[i]["points"].mean(0) for i in range(20)])
    assert means.abs().max() > 3.0  # offsets are applied
    item = data[0]
    assert torch.allclose(item["points"], item["centers"], atol=1e-4)  # noise scales with the set


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_clusters=0), "num_clusters must be >= 1, got 0"),
        (dict(dim=2.0), "dim must be an int, got float"),
        (dict(snr=0.0), "snr must be > 0.0, got 0.0"),
        (dict(scale_range=(2.0, 1.0)), "low <= high"),
        (dict(length=0), "length must be >= 1"),
    ],
)
def test_gaussian_mixture_argument_errors(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        GaussianMixtureSets(**kwargs)


def test_synthetic_images():
    data = SyntheticImages(num_classes=4, image_size=6, channels=2, seed=1, length=10)
    x, y = data[3]
    assert x.shape == (2, 6, 6) and y.dtype == torch.long and 0 <= y.item() < 4
    x2, y2 = SyntheticImages(num_classes=4, image_size=6, channels=2, seed=1, length=10)[3]
    assert torch.equal(x, x2) and y == y2
    with pytest.raises(ValueError, match="num_classes must be >= 2, got 1"):
        SyntheticImages(num_classes=1)


# ----------------------------------------------------------------------------- losses


def test_causal_loss_does_not_shift_again_and_ignores_minus_100():
    logits = torch.full((1, 3, 4), -10.0)
    logits[0, 0, 2] = logits[0, 1, 3] = 10.0  # position t predicts labels[t]
    batch = {"input_ids": torch.tensor([[1, 2, 3]]), "labels": torch.tensor([[2, 3, -100]])}
    assert causal_lm_loss(logits, batch).item() < 1e-6
    assert masked_lm_loss(logits, batch).item() < 1e-6


def test_loss_errors_name_what_was_found():
    with pytest.raises(ValueError, match="batch has no 'labels' key \\(keys: \\['input_ids'\\]\\)"):
        causal_lm_loss(torch.zeros(1, 2, 3), {"input_ids": torch.zeros(1, 2)})
    with pytest.raises(TypeError, match="batch must be a dict with key 'labels', got Tensor"):
        causal_lm_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="expected logits \\[B, S, vocab\\] and labels \\[B, S\\], got logits \\(1, 2, 3\\) and labels \\(1, 3\\)"):
        causal_lm_loss(torch.zeros(1, 2, 3), {"labels": torch.zeros(1, 3, dtype=torch.long)})
    with pytest.raises(TypeError, match="outputs must be a logits tensor or have a .logits tensor, got str"):
        masked_lm_loss("x", {"labels": torch.zeros(1, 2, dtype=torch.long)})
    with pytest.raises(ValueError, match="predictions \\(1, 2, 2\\) and batch\\['centers'\\] \\(1, 2, 3\\)"):
        gmm_centers_loss(torch.zeros(1, 2, 2), {"centers": torch.zeros(1, 2, 3)})


def test_classification_loss_batch_forms():
    logits = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])
    labels = torch.tensor([0, 1])
    expected = torch.nn.functional.cross_entropy(logits, labels)
    for batch in ((torch.zeros(2, 3), labels), {"labels": labels}, labels):
        assert torch.allclose(classification_loss(logits, batch), expected)
    with pytest.raises(ValueError, match="labels \\[B\\], got logits \\(2, 2\\) and labels \\(3,\\)"):
        classification_loss(logits, torch.tensor([0, 1, 1]))


def test_gmm_assignment_loss_values():
    logits = torch.zeros(1, 2, 3)
    loss = gmm_assignments_loss(logits, {"assignments": torch.tensor([[0, 2]])})
    assert loss.item() == pytest.approx(torch.log(torch.tensor(3.0)).item())
