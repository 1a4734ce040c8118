"""NumPy training: gradients against finite differences, schedule, determinism, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecompile.errors import DataError
from edgecompile.frontend.checkpoint import load_checkpoint
from edgecompile.reference import forward
from edgecompile.train import TrainConfig, train
from edgecompile.train.cells import loss_and_grads
from edgecompile.train.qat import fake_quantize, quantize_weight, shadow_grads, weight_frac
from edgecompile.train.trainer import as_used, init_params, params_to_model, top_fraction_mask

EDGECOMPILE = Path(sys.executable).parent / "edgecompile"


def _params(cell, wrank, urank, seed=0, D=3, H=4, C=3):
    rng = np.random.default_rng(seed)
    cfg = TrainConfig(cell=cell, hidden=H, wrank=wrank, urank=urank,
                      inner_steps=3 if cell == "ERNN" else None)
    p = as_used(init_params(cfg, D, C, rng))
    # move every parameter off its initial value so no gradient is trivially symmetric
    p = {k: np.array(v + rng.normal(0, 0.3, np.shape(v))) for k, v in p.items()}
    if cell == "ERNN":  # distinct positive step sizes and a decay, as a checkpoint holds them
        p["eta"], p["alpha"] = rng.uniform(0.1, 0.5, 3), np.asarray(rng.uniform(0.5, 1.5))
    return p


CASES = [
    (cell, wr, ur, nls)
    for cell in ("FastGRNN", "FastRNN", "ERNN")
    for wr, ur in ((None, None), (2, 3))
    for nls in (("sigmoid", "tanh"), ("quantSigm", "quantTanh"), ("relu", "quantSigm4"), ("quantSigm4", "relu"))
]


@pytest.mark.parametrize("cell, wrank, urank, nls", CASES)
def test_gradients_match_finite_differences(cell, wrank, urank, nls):
    p = _params(cell, wrank, urank)
    if cell == "FastGRNN" and nls[0] == "relu":
        p["Bg"] = p["Bg"] - 1.5  # z = relu(.) around 0..1, both sides of the kink: h stays O(1)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(5, 6, 3)), rng.integers(0, 3, 5)
    loss, _, grads = loss_and_grads(p, X, y, *nls)
    assert set(grads) == set(p)
    eps = 1e-6
    for name, value in p.items():
        num = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            old = value[idx]
            value[idx] = old + eps
            plus = loss_and_grads(p, X, y, *nls)[0]
            value[idx] = old - eps
            minus = loss_and_grads(p, X, y, *nls)[0]
            value[idx] = old
            num[idx] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("cell, wrank, urank, nls", CASES)
def test_training_forward_is_the_reference(cell, wrank, urank, nls):
    cfg = TrainConfig(cell=cell, hidden=4, wrank=wrank, urank=urank, gate_nl=nls[0], update_nl=nls[1])
    p = _params(cell, wrank, urank)
    rng = np.random.default_rng(2)
    X = rng.normal(2.0, 3.0, size=(7, 5, 3))
    mean, std = X.reshape(-1, 3).mean(0), X.reshape(-1, 3).std(0)
    model = params_to_model(p, mean, std, cfg)
    _, logits, _ = loss_and_grads(p, (X - mean) / std, None, *nls)
    np.testing.assert_allclose(logits, forward(model, X), rtol=1e-12, atol=1e-12)


def test_top_fraction_mask_exact_count():
    a = np.array([[0.1, -3.0, 0.2], [2.0, 0.2, -0.2]])  # ties at 0.2 resolved stably
    m = top_fraction_mask(a, 0.5)
    assert m.sum() == 3 and m[0, 1] and m[1, 0]


def test_fake_quantize_is_a_power_of_two_grid():
    w = np.array([[0.3, -0.71], [0.05, 0.6]])
    f = weight_frac(w, 8)
    assert f == 7  # 0.71 * 2^7 = 90.9 <= 127 < 0.71 * 2^8
    q = quantize_weight(w, 8)
    np.testing.assert_array_equal(q * 2**f, np.floor(w * 2**f + 0.5))
    assert quantize_weight(np.array([0.5 / 128]), 8)[0] == 0.5 / 128
    p = fake_quantize({"W": w, "U": w, "Bh": np.array([1 / 8192, 9.0]), "FC": w}, 8)
    np.testing.assert_array_equal(p["Bh"], [1 / 4096, 32767 / 4096])  # half up, saturated Q12


def test_qat_of_a_multiplied_out_low_rank_matrix():
    # W1 [3,2] @ W2 [2,4]: two products cost 14 MACs > 12, so the quantizer multiplies W out
    p = _params("FastGRNN", 2, 3)
    q = fake_quantize(p, 8)
    assert "W" in q and "W1" not in q and "U" in q and "U1" not in q  # U: 24 > 16 MACs too
    kept = fake_quantize(_params("FastGRNN", 2, 3, D=12, H=32), 8)  # 88 < 384, 96 < 1024
    assert "W1" in kept and "U2" in kept and "W" not in kept
    np.testing.assert_array_equal(q["W"], quantize_weight(p["W1"] @ p["W2"], 8))
    # straight-through: gradients at the product map to the factors by the chain rule
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(4, 5, 3)), rng.integers(0, 3, 4)
    dense = {k: v for k, v in p.items() if k not in ("W1", "W2")}
    dense["W"] = p["W1"] @ p["W2"]
    g = shadow_grads(p, loss_and_grads(dense, X, y)[2])
    ref = loss_and_grads(p, X, y)[2]
    for k in ("W1", "W2"):
        np.testing.assert_allclose(g[k], ref[k], rtol=1e-10, atol=1e-12)


def _easy_task(n=120, T=8, D=3, seed=0):
    """Class = sign of the mean of channel 0 in the last three steps (needs the recurrence)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, (n, T, D)) + 5.0
    y = (X[:, -3:, 0].mean(axis=1) > 5.0).astype(np.int64)
    return X.astype(np.float32), y


def test_training_is_deterministic_and_learns():
    X, y = _easy_task()
    cfg = TrainConfig(hidden=8, wrank=2, urank=3, sparsity=0.5, epochs=15, seed=3, lr=0.02)
    a, b = train(X, y, cfg), train(X, y, cfg)
    assert a.model.content_hash() == b.model.content_hash()
    assert [h.loss for h in a.history] == [h.loss for h in b.history]
    c = train(X, y, TrainConfig(hidden=8, wrank=2, urank=3, sparsity=0.5, epochs=15, seed=4, lr=0.02))
    assert c.model.content_hash() != a.model.content_hash()
    assert [h.stage for h in a.history][:10] == ["dense"] * 5 + ["iht"] * 5
    assert a.train_acc > 0.75


def test_fastrnn_qat_saves_grid_values():
    X, y = _easy_task(n=80)
    res = train(X, y, TrainConfig(cell="FastRNN", hidden=6, epochs=4, qat=True, qat_epochs=2))
    assert res.history[-1].stage == "qat"
    for name in ("W", "U", "FC"):
        w = res.model.arrays()[name]
        np.testing.assert_array_equal(quantize_weight(w, 8), w)


def test_bad_config_is_a_data_error():
    X, y = _easy_task(n=20)
    with pytest.raises(DataError, match="sparsity"):
        train(X, y, TrainConfig(sparsity=1.0))
    with pytest.raises(DataError, match="two classes"):
        train(X, np.zeros(20, dtype=np.int64), TrainConfig())


def test_cli_train_writes_a_sparse_checkpoint_that_beats_chance(tmp_path):
    X, y = _easy_task(n=200, seed=5)
    np.save(tmp_path / "X.npy", X[:160])
    np.save(tmp_path / "y.npy", y[:160])
    out, report = tmp_path / "model.npz", tmp_path / "train.json"
    cmd = [str(EDGECOMPILE), "train", "--data", str(tmp_path / "X.npy"),
           "--labels", str(tmp_path / "y.npy"), "--hidden", "8", "--wrank", "2", "--urank", "4",
           "--sparsity", "0.5", "--epochs", "24", "--lr", "0.02", "--seed", "1",
           "--json", str(report), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    model = load_checkpoint(out)
    assert model.cell == "FastGRNN" and model.hidden_dim == 8 and model.W.rank == 2
    assert model.mean.shape == (3,) and model.std.shape == (3,)
    for f in model.W.factors + model.U.factors:
        assert np.count_nonzero(f) == f.size - round(0.5 * f.size)
    acc = np.mean(forward(model, X[160:]).argmax(axis=1) == y[160:])
    assert acc >= 0.75, acc
    rep = json.loads(report.read_text())
    assert rep["sparsity"] == {"W1": 0.5, "W2": 0.5, "U1": 0.5, "U2": 0.5}
    # the same seed gives the same file content
    r2 = subprocess.run(cmd[:-1] + [str(tmp_path / "again.npz"), "--quiet"],
                        capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0 and r2.stderr == ""
    assert load_checkpoint(tmp_path / "again.npz").sha256 == model.sha256


@pytest.mark.parametrize("args, message", [
    (["--data", "X.npy"], "--labels y.npy is required"),
    (["--data", "X.npy", "--labels", "bad.npy"], "8 labels for 10 sequences"),
    (["--data", "absent.npy", "--labels", "y.npy"], "no such file"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, args, message):
    np.save(tmp_path / "X.npy", np.zeros((10, 4, 2), np.float32))
    np.save(tmp_path / "y.npy", np.arange(10) % 2)
    np.save(tmp_path / "bad.npy", np.arange(8) % 2)
    r = subprocess.run([str(EDGECOMPILE), "train", *args, "-o", "m.npz"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("cell", ["FastGRNN", "FastRNN"])
def test_gradients_match_torch_autograd(cell):
    """An independent check where PyTorch is installed (it is not a dependency)."""
    torch = pytest.importorskip("torch")
    p = _params(cell, 2, 3, D=3, H=5, C=4)
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(6, 7, 3)), rng.integers(0, 4, 6)
    loss, _, grads = loss_and_grads(p, X, y)
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
    W, U = t["W1"] @ t["W2"], t["U1"] @ t["U2"]
    x = torch.tensor(X)
    h = torch.zeros(6, 5, dtype=torch.float64)
    for step in range(7):
        pre = x[:, step] @ W + h @ U
        if cell == "FastGRNN":
            z, c = torch.sigmoid(pre + t["Bg"]), torch.tanh(pre + t["Bh"])
            h = z * h + (torch.sigmoid(t["zeta"]) * (1 - z) + torch.sigmoid(t["nu"])) * c
        else:
            h = torch.sigmoid(t["beta"]) * h + torch.sigmoid(t["alpha"]) * torch.tanh(pre + t["B"])
    tloss = torch.nn.functional.cross_entropy(h @ t["FC"] + t["FCbias"], torch.tensor(y))
    tloss.backward()
    assert abs(tloss.item() - loss) < 1e-12
    for k in p:
        np.testing.assert_allclose(grads[k], t[k].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)
