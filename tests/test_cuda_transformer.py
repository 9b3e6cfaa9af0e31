"""The transformer chapters (Part II) on a CUDA device with CUDA generators, against the same computation on the CPU.

Every test body takes `device`: the "cpu" case runs everywhere (it exercises the same device code paths with CPU
generators), the "cuda" case is marked `cuda` and skipped without a GPU. A CUDA generator draws other numbers than
a CPU generator with the same seed, so CUDA results are compared with CPU results statistically (means over a few
seeds, tolerances stated and justified where they are used), and the outputs are checked to live on the device.
"""
import math

import numpy as np
import pytest
import torch

from devices import DEVICES, device_generator as _gen, on_device as _on
from learnthy_nb.transformer import (SelectiveTransformer, TokenSelectionTask, attention_mass, excess_risk,
                                     fit_ensemble, fit_regressor, hand_set_selector, kernel_ridge_excess_risk,
                                     training_sets)
from learnthy_nb.transformer_beyond import run_config
from learnthy_nb.transformer_fixed import FixedImportanceTask
from learnthy_nb.transformer_seq import (SequenceSelectionTask, fit_length_curriculum, hand_set_second_selector,
                                         sequence_attention_mass, sequence_excess_risk, sequence_models)

SEEDS = (0, 1, 2, 3, 4)


def _agree(a, b, floor=1e-3):
    """Two samples (one value per seed) have the same mean: a two-sample z-test at 4 standard errors.

    The standard error of the difference of the means is estimated from the seed-to-seed spread of both samples
    (`floor` guards against two near-constant samples); 4 standard errors make a false alarm rarer than 1 in 10^4.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return abs(a.mean() - b.mean()) <= 4 * se + floor




def _residual_variance_matches(task, X, y):
    """y - f(X) has variance noise_std^2: within 4 standard errors (var of a Gaussian square: 2 sigma^4 / n)."""
    r = (y - task.regression_function(X)).flatten().double()
    return abs(float(r.var()) - task.bayes_risk) < 4 * task.bayes_risk * math.sqrt(2 / r.numel())


@pytest.mark.parametrize("device", DEVICES)
def test_tasks_sample_with_a_device_generator(device):
    tasks = [TokenSelectionTask(L=8, k=4, smoothness=1.0, noise_std=0.5, key_gap=0.1),
             FixedImportanceTask(L=8, k=4, smoothness=1.0, noise_std=0.5),
             SequenceSelectionTask(L=4, T=8, k=4, smoothness=1.0, noise_std=0.5, key_offset=1.0, second_weight=0.5)]
    for task in tasks:
        X, y = task.sample(50_000, _gen(device, 0), device=device)
        assert _on(X, device) and _on(y, device) and X.dtype == torch.float32
        X2, y2 = task.sample(50_000, _gen(device, 0), device=device)
        assert torch.equal(X, X2) and torch.equal(y, y2)             # the generator alone fixes the draw
        assert _residual_variance_matches(task, X, y)
        assert 0.0 <= float(X[..., 1:].min()) and float(X[..., 1:].max()) < 1.0
        # a CPU generator gives the CPU numbers on the device (drawn on the CPU, then moved)
        Xc, _ = task.sample(100, _gen("cpu", 1), device=device)
        assert torch.equal(Xc.cpu(), task.sample(100, _gen("cpu", 1), device="cpu")[0])


def _train(device, seed):
    """Chapter 20's quick configuration for one model: L = 8, k = 4, n = 400, 150 AdamW steps, batch 64."""
    task = TokenSelectionTask(L=8, k=4, smoothness=1.0, noise_std=0.5, key_gap=0.1)
    X, y = task.sample(400, _gen(device, 100 + seed), device=device)
    model = SelectiveTransformer(4, 16, 2, 1, 8, device=device, init_generator=_gen(device, seed))
    hist = fit_regressor(model, X, y, n_steps=150, lr=3e-3, batch_size=64, generator=_gen(device, 200 + seed),
                         val_fraction=0.2)
    assert _on(next(model.parameters()), device) and hist.device.type == "cpu" and hist.shape == (150,)
    risk = excess_risk(model, task, 2000, _gen(device, 999))
    mass = attention_mass(model, task, 2000, _gen(device, 999))
    return float(hist[-30:].mean()), risk, mass


@pytest.mark.parametrize("device", DEVICES)
def test_transformer_training_agrees_with_cpu(device):
    dev = np.array([_train(device, s) for s in SEEDS])
    cpu = np.array([_train("cpu", s) for s in SEEDS])
    # final minibatch loss, excess risk and attention mass over 5 seeds: the device run (other random numbers) and
    # the CPU run have the same means (on the CPU at this size the seed-to-seed sd is about 0.06, 0.02 and 0.09)
    for j, what in enumerate(("final loss", "excess risk", "attention mass")):
        assert _agree(dev[:, j], cpu[:, j]), (what, dev[:, j], cpu[:, j])


@pytest.mark.parametrize("device", DEVICES)
def test_ensemble_hand_set_selector_and_kernel_ridge_on_device(device):
    task = TokenSelectionTask(L=8, k=4, smoothness=1.0, noise_std=0.5, key_gap=0.1)
    sel = hand_set_selector(4, 8, task.g, 2000.0, device=device)
    assert _on(next(sel.parameters()), device)
    assert excess_risk(sel, task, 5000, _gen(device, 0)) < 1e-6        # exact selection, on any device
    assert attention_mass(sel, task, 5000, _gen(device, 0)) > 0.999
    X, y = training_sets(task, 2, 200, device=device)
    assert _on(X, device)
    models = [SelectiveTransformer(4, 8, 2, 1, 8, device=device, init_generator=_gen(device, s)) for s in (0, 1)]
    hist = fit_ensemble(models, X, y, [200, 100], n_steps=20, lr=1e-3, batch_size=16, generator=_gen(device, 3))
    assert hist.shape == (20, 2) and bool(torch.isfinite(hist).all())
    # kernel ridge on device inputs with a device generator: the same estimator as on the CPU, on other data,
    # validation splits and test sets; the mean excess risks over 5 seeds agree
    risks = {d: [kernel_ridge_excess_risk(task, *task.sample(200, _gen(d, s), device=d), n_test=2000,
                                          generator=_gen(d, 10 + s)) for s in SEEDS] for d in (device, "cpu")}
    assert _agree(risks[device], risks["cpu"])


@pytest.mark.parametrize("device", DEVICES)
def test_run_config_agrees_with_cpu(device):
    # chapters 21 and 23 at their quick size for one (L, k); run_config draws data and initial weights with CPU
    # generators, so the device run differs from the CPU run only by floating-point rounding in training
    args = dict(d_model=16, n_heads=2, n_steps=100, lr=3e-3, batch_size=64, val_fraction=0.2, n_test=500)
    for task in (TokenSelectionTask(L=8, k=4, smoothness=1.0, noise_std=0.5, key_gap=0.1),
                 FixedImportanceTask(L=8, k=4, smoothness=1.0, noise_std=0.5)):
        dev, cpu = run_config(task, 300, 2, device=device, **args), run_config(task, 300, 2, device="cpu", **args)
        assert set(dev) == set(cpu)
        # kernel ridge is a float64 closed form: equal up to rounding
        np.testing.assert_allclose(dev["krr"], cpu["krr"], rtol=1e-5)
        # trained models start from the same weights and data; rounding differences can grow along 100 steps (at
        # worst like a change of seed), so the means over the 2 seeds agree by the z-test, or within 30 %
        for kind in ("transformer", "mlp"):
            assert _agree(dev[kind], cpu[kind], floor=0.3 * cpu[kind].mean()), (kind, dev[kind], cpu[kind])


@pytest.mark.parametrize("device", DEVICES)
def test_sequence_chapter_on_device(device):
    task = SequenceSelectionTask(L=4, T=8, k=4, smoothness=1.0, noise_std=0.5, key_spacing=0.1)

    def run(d):
        X, y = task.sample(400, _gen(d, 100), device=d)
        models = sequence_models("transformer", 4, 4, 16, [1, 2, 3, 4, 5], device=d)
        fit_ensemble(models, X[None].expand(5, -1, -1, -1), y[None].expand(5, -1, -1), [400] * 5, n_steps=100,
                     lr=3e-3, batch_size=32, val_fraction=0.2, generator=_gen(d, 1))
        assert _on(next(models[0].parameters()), d)
        risks = [sequence_excess_risk(m, task, 500, _gen(d, 999)) for m in models]
        masses = [sequence_attention_mass(m.model, task, 500, _gen(d, 999)) for m in models]
        assert all(m.device.type == "cpu" and m.shape == (2,) for m in masses)
        return np.array(risks), np.array([float(m.max()) for m in masses])

    dev, cpu = run(device), run("cpu")
    # chapter 22's quick seq-to-seq point, 5 initialisations: the same mean excess risk and best-head mass
    assert _agree(dev[0], cpu[0]) and _agree(dev[1], cpu[1])
    sec = SequenceSelectionTask(8, 8, 4, 1.0, 0.5, key_spacing=0.1, key_offset=1.0, second_weight=0.5)
    two = hand_set_second_selector(sec, device=device)
    X, _ = sec.sample(5000, _gen(device, 9), device=device, dtype=torch.float64)
    with torch.no_grad():
        err = float(((two(X) - sec.regression_function(X)[:, 0]) ** 2).mean())
    assert err < 1e-8                                                     # exact construction, on any device
    short = TokenSelectionTask(L=2, k=4, smoothness=1.0, noise_std=0.5, key_gap=0.1)
    long = TokenSelectionTask(L=8, k=4, smoothness=1.0, noise_std=0.5, key_gap=0.1)
    Xs, ys = training_sets(short, 1, 100, device=device)
    Xl, yl = training_sets(long, 1, 100, device=device)
    model = SelectiveTransformer(4, 8, 2, 1, 8, positional=False, device=device, init_generator=_gen(device, 0))
    fit_length_curriculum([model], (Xs, ys), (Xl, yl), [100], n_steps_short=10, n_steps_long=10, lr=1e-3,
                          batch_size=16, generator=_gen(device, 5))
    assert model.window == 8 and math.isfinite(excess_risk(model, long, 200, _gen(device, 6)))
