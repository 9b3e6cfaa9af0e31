"""Smoke test of a plain `pip install` (no [dev] extra): run with the python of a fresh venv, outside the repo.

Imports every module of learnthy_nb and calls the code paths that need the runtime dependencies that are not
torch (POT for w1_pot, scikit-learn for kernel_ridge_excess_risk, scipy, matplotlib, tqdm). `make install-check`
creates the venv, installs the package into it and runs this file.
"""
import importlib
import importlib.util
import pkgutil
import sys

import matplotlib
matplotlib.use("Agg")
import torch

import learnthy_nb
from learnthy_nb.core import fit_power_law, plot_rate, progress
from learnthy_nb.diffusion import w1_pot
from learnthy_nb.transformer import TokenSelectionTask
from learnthy_nb.transformer_beyond import kernel_ridge_excess_risk

# Modules of an optional extra (module -> what the extra provides): imported only where it is installed.
OPTIONAL = {"flower": "flwr", "scalablefl_flower": "flwr"}                   # the [fl] extra (Flower needs Python >= 3.11)
names = sorted(m.name for m in pkgutil.iter_modules(learnthy_nb.__path__) if not m.name.startswith("_"))
skipped = [n for n in names if n in OPTIONAL and importlib.util.find_spec(OPTIONAL[n]) is None]
for name in names:
    if name not in skipped:
        importlib.import_module(f"learnthy_nb.{name}")
assert "site-packages" in learnthy_nb.__file__, f"imported from {learnthy_nb.__file__}, not the installed package"
g = torch.Generator().manual_seed(0)
x = torch.randn(50, 2, generator=g, dtype=torch.float64)
assert abs(w1_pot(x, x + torch.tensor([0.3, 0.4], dtype=torch.float64)) - 0.5) < 1e-9     # a shift by (0.3, 0.4)
task = TokenSelectionTask(L=4, k=3, smoothness=1.0, noise_std=0.1, seed=0)
X, y = task.sample(200, generator=torch.Generator().manual_seed(1))
risk = kernel_ridge_excess_risk(task, X, y, n_test=200, generator=torch.Generator().manual_seed(2))
assert 0 <= risk < 1, risk
import matplotlib.pyplot as plt
_, ax = plt.subplots()
plot_rate(ax, [10, 100, 1000], [1.0, 0.3, 0.1], theory_exponent=-0.5, fit=fit_power_law([10, 100, 1000], [1.0, 0.3, 0.1]))
list(progress(range(3), quiet=True))
print(f"install check: learnthy_nb {learnthy_nb.__version__} from {learnthy_nb.__file__}; "
      f"{len(names) - len(skipped)} modules imported (without the optional extras: {skipped}); W1 (POT) and kernel ridge (scikit-learn) ran; Python {sys.version.split()[0]}")
