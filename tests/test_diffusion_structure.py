"""Unit tests of learnthy_nb.diffusion_structure (and the skip path of the score network it relies on)."""
import math

import pytest
import torch

from learnthy_nb.core import haar_orthogonal
from learnthy_nb.diffusion import ScoreNet, sample, train_score_model
from learnthy_nb.diffusion_structure import (circle_coordinate, distance_to_circle, embed_on_circle, embed_on_line,
                                             line_coordinate, memorised_fraction, nearest_distance, pow10_text,
                                             principal_frame)


@pytest.fixture(autouse=True)
def cpu_device(monkeypatch):
    """These are CPU tests (tests/test_cuda_diffusion.py runs the GPU): get_device() is the CPU here."""
    monkeypatch.setenv("LEARNTHY_DEVICE", "cpu")


def test_nearest_distance_and_memorised_fraction():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 3, generator=g, dtype=torch.float64)
    y = torch.rand(77, 3, generator=g, dtype=torch.float64)
    brute = torch.stack([(x - yi).norm(dim=-1).min() for yi in y])
    assert torch.allclose(nearest_distance(y, x, chunk=10), brute, atol=1e-12)
    assert memorised_fraction(x, x, 1e-12) == 1.0
    far = x + 10.0
    assert memorised_fraction(far, x, 1.0) == 0.0
    # fraction within eps of points on a grid, for uniform draws: 2 eps * (number of points) / length
    pts = torch.linspace(-0.95, 0.95, 20, dtype=torch.float64)[:, None]
    u = 2 * torch.rand(200_000, 1, generator=g, dtype=torch.float64) - 1
    assert abs(memorised_fraction(u, pts, 0.01) - 2 * 0.01 * 20 / 2) < 0.005


def test_embeddings_invert_and_lie_on_curves():
    g = torch.Generator().manual_seed(2)
    f = haar_orthogonal(6, 2, generator=g)
    u = 2 * torch.rand(500, generator=g, dtype=torch.float64) - 1
    line = embed_on_line(u, f)
    assert line.shape == (500, 6)
    assert torch.allclose(line, u[:, None] * f[:, 0], atol=1e-15)    # u v with v = frame[:, 0]: on the line, |x| = |u|
    assert torch.allclose(line_coordinate(line, f)[:, 0], u)
    circ = embed_on_circle(u, f)
    assert torch.allclose(circ.norm(dim=-1), torch.full((500,), 1 / math.pi, dtype=torch.float64))
    assert torch.allclose(circle_coordinate(circ, f)[:, 0], u)
    assert float(distance_to_circle(circ, f).max()) < 1e-12
    # a point pushed off the circle: distance = size of the push (normal to the plane, and radial)
    normal = torch.linalg.qr(torch.cat([f, torch.randn(6, 1, generator=g, dtype=torch.float64)], 1))[0][:, 2]
    assert torch.allclose(distance_to_circle(circ[:3] + 0.2 * normal, f), torch.full((3,), 0.2, dtype=torch.float64))
    assert torch.allclose(distance_to_circle(1.5 * circ[:3], f), torch.full((3,), 0.5 / math.pi, dtype=torch.float64))


def test_principal_frame_finds_the_line_and_the_plane():
    g = torch.Generator().manual_seed(3)
    f = haar_orthogonal(7, 2, generator=g)
    u = 2 * torch.rand(300, generator=g, dtype=torch.float64) - 1
    rot = principal_frame(embed_on_line(u, f))
    assert torch.allclose(rot.T @ rot, torch.eye(7, dtype=torch.float64), atol=1e-10)
    assert abs(abs(float(rot[:, 0] @ f[:, 0])) - 1) < 1e-10
    rot_c = principal_frame(embed_on_circle(u, f))
    plane = rot_c[:, :2]
    assert torch.allclose(plane @ plane.T @ f, f, atol=1e-8)        # the top two axes span the circle's plane


def test_skip_path_represents_the_normal_part_exactly():
    net = ScoreNet(1, 3, width=8, n_freq=2, clip=50.0, skip=True, init_generator=torch.Generator().manual_seed(0),
                   device="cpu")
    with torch.no_grad():
        net.weights[-1].zero_()
        net.biases[-1].zero_()
        net.skip_weight.copy_(torch.diag(torch.tensor([0.0, 1.0, 1.0]))[None])
    x = torch.tensor([[[0.3, 0.02, -0.01]]])
    t = torch.tensor([[0.01]])
    sigma = math.sqrt(1 - math.exp(-0.02))
    expected = 50.0 * torch.tanh(torch.tensor([0.0, 0.02, -0.01]) / sigma / 50.0)
    assert torch.allclose(net.eps(x, t)[0, 0], expected, atol=1e-6)
    n_plain = sum(p.numel() for p in ScoreNet(2, 3, width=8, n_freq=2).parameters())
    n_skip = sum(p.numel() for p in ScoreNet(2, 3, width=8, n_freq=2, skip=True).parameters())
    assert n_skip - n_plain == 2 * 9


def test_skip_network_keeps_samples_near_a_line():
    # data on an axis of R^6; with the skip path a short training keeps the samples near the line
    g = torch.Generator().manual_seed(4)
    u = 2 * torch.rand(300, 1, generator=g) - 1
    x = torch.cat([u, torch.zeros(300, 5)], 1)
    kw = dict(n_steps=300, batch_size=128, lr=3e-3, width=16, n_freq=4, device="cpu", quiet=True)
    t_min = 1e-3
    off = {}
    for skip in (False, True):
        model = train_score_model(x, t_min, 3.0, skip=skip, generator=torch.Generator().manual_seed(5), **kw)
        y = sample(model, 2000, t_min, 3.0, n_steps=40, generator=torch.Generator().manual_seed(6))
        off[skip] = float(y[:, 1:].norm(dim=-1).pow(2).mean().sqrt())
    assert off[True] < 0.2 * off[False]                            # measured: about 0.46 against 4.4


def test_pow10_text():
    assert pow10_text(1e-6) == "10⁻⁶" and pow10_text(1e3) == "10³" and pow10_text(0.9) == "10⁰"


def test_float32_points_and_frames_give_float64_on_the_points_device():
    g = torch.Generator().manual_seed(7)
    f = haar_orthogonal(5, 2, generator=g, dtype=torch.float32)
    u = 2 * torch.rand(50, generator=g) - 1                          # float32 inputs
    for embed, coord in ((embed_on_line, line_coordinate), (embed_on_circle, circle_coordinate)):
        x = embed(u, f)
        assert x.dtype == torch.float64 and x.device == u.device
        assert torch.allclose(coord(x, f)[:, 0], u.double(), atol=1e-6)
    assert distance_to_circle(embed_on_circle(u, f).float(), f).dtype == torch.float64
    assert nearest_distance(u[:5, None], u[:, None].double()).dtype == torch.float64


def _frame(k=2):
    return haar_orthogonal(4, k, generator=torch.Generator().manual_seed(0))


BAD_CALLS = [
    pytest.param(lambda: nearest_distance(torch.zeros(3), torch.zeros(2, 1)), r"^y must be a tensor",
                 id="nearest_distance-y-1d"),
    pytest.param(lambda: nearest_distance(torch.zeros(3, 2), torch.zeros(2, 1)), r"^y and x must have the same dimension",
                 id="nearest_distance-dimensions"),
    pytest.param(lambda: nearest_distance(torch.tensor([[float("nan")]]), torch.zeros(2, 1)), r"^y contains NaN",
                 id="nearest_distance-y-nan"),
    pytest.param(lambda: memorised_fraction(torch.zeros(3, 1), torch.zeros(2, 1), 0.0), r"^eps must be ",
                 id="memorised_fraction-eps-zero"),
    pytest.param(lambda: embed_on_line(torch.zeros(3, 2), _frame()), r"^u must be a tensor", id="embed_on_line-u-shape"),
    pytest.param(lambda: embed_on_circle(torch.tensor([float("nan")]), _frame()), r"^u contains NaN",
                 id="embed_on_circle-u-nan"),
    pytest.param(lambda: embed_on_circle(torch.zeros(3), 2 * _frame()), r"^frame must have orthonormal columns",
                 id="embed_on_circle-frame-not-orthonormal"),
    pytest.param(lambda: embed_on_circle(torch.zeros(3), _frame(1)), r"^frame must be a tensor of shape",
                 id="embed_on_circle-frame-one-column"),
    pytest.param(lambda: circle_coordinate(torch.zeros(3, 5), _frame()), r"^y must have shape", id="circle_coordinate-y-shape"),
    pytest.param(lambda: principal_frame(torch.zeros(1, 3)), r"^x must be a tensor", id="principal_frame-x-one-row"),
    pytest.param(lambda: pow10_text(0.0), r"^x must be ", id="pow10_text-x-zero"),
    pytest.param(lambda: line_coordinate([[0.0, 1.0]], _frame()), r"^y must be a torch tensor", id="line_coordinate-y-list"),
    pytest.param(lambda: principal_frame(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]])), r"^x contains NaN",
                 id="principal_frame-x-nan"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS)
def test_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_loo_bandwidth_is_sklearns_leave_one_out_likelihood():
    import numpy as np
    from sklearn.model_selection import GridSearchCV, LeaveOneOut
    from sklearn.neighbors import KernelDensity
    from learnthy_nb.diffusion_structure import loo_bandwidth
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = np.geomspace(0.05, 3.0, 20)
    h, scores = loo_bandwidth(x, grid, chunk=9)
    gs = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": grid}, cv=LeaveOneOut()).fit(x.numpy())
    assert gs.best_params_["bandwidth"] == h
    assert np.abs(gs.cv_results_["mean_test_score"] - scores.numpy()).max() < 1e-8
    # data on a line in R^8: the likelihood drives h down to the order of the spacing of neighbouring points
    u = torch.rand(400, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    line = torch.cat([u[:, None], torch.zeros(400, 7, dtype=torch.float64)], 1)
    h_line, _ = loo_bandwidth(line)
    assert h_line < 10 / 400
    with pytest.raises(ValueError, match="bandwidths"):
        loo_bandwidth(x, [5.0, 10.0, 20.0])
    with pytest.raises(ValueError, match="x"):
        loo_bandwidth(torch.zeros(2, 3))
