"""learnthy_nb.bg_kernels and learnthy_nb.bg_lower_bounds (nbs/93_kernels, nbs/95_lower_bounds): exact Walsh spectra
of dot-product kernels on the hypercube, the fast Walsh-Hadamard transform."""
import math

import pytest
import torch

from learnthy_nb.bg_kernels import hypercube_eigenvalues, hypercube_points
from learnthy_nb.bg_lower_bounds import walsh_coefficients, walsh_degrees
from learnthy_nb.core import rbf_kernel
from learnthy_nb.parity import ntk_kernel


@pytest.mark.parametrize("kernel", [ntk_kernel, lambda A, B: rbf_kernel(A, B, bandwidth=0.7)], ids=["ntk", "rbf"])
def test_walsh_spectrum_matches_eigh(kernel):
    d = 7
    Z = hypercube_points(d, device="cpu")
    assert Z.shape == (2**d, d) and torch.allclose(Z.abs(), torch.full_like(Z, d**-0.5))
    lam = hypercube_eigenvalues(kernel, d, device="cpu")
    ev = torch.linalg.eigvalsh(kernel(Z, Z).double() / 2**d).flip(0)
    mult = torch.tensor([math.comb(d, k) for k in range(d + 1)])
    pred = torch.repeat_interleave(lam, mult).sort(descending=True).values
    assert torch.allclose(ev, pred, atol=1e-12)


def test_walsh_coefficients_parseval_degrees_and_a_parity():
    f = torch.randn(2, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c = walsh_coefficients(f)
    assert torch.allclose(c.square().sum(1), f.square().mean(1))          # Parseval, E f^2 = sum_S f_hat(S)^2
    deg = walsh_degrees(6)
    assert deg.bincount().tolist() == [math.comb(6, k) for k in range(7)]
    Z = hypercube_points(6, device="cpu")
    S = (0, 2, 5)
    chi = torch.prod(math.sqrt(6) * Z[:, list(S)], dim=1)                  # the parity on S, +-1
    c = walsh_coefficients(chi)
    mask = sum(1 << j for j in S)
    assert abs(float(c[mask]) - 1.0) < 1e-12 and float(c.abs().sum()) == pytest.approx(1.0)


def test_bad_inputs_name_their_argument():
    with pytest.raises(ValueError, match="^d"):
        hypercube_points(0, device="cpu")
    with pytest.raises(ValueError):
        walsh_coefficients(torch.randn(3, 5))                              # length not a power of two
