"""What the CUDA test modules (test_cuda*.py) share: the device parametrisation and two small helpers.

Every test body runs on the CPU (always) and on CUDA (marker `cuda`, skipped without a GPU; `make gpu-check`)."""
import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def device_generator(device: str, seed: int) -> torch.Generator:
    """A generator on `device`, seeded: on CUDA the draws differ from the CPU's, so results compare statistically."""
    return torch.Generator(device=device).manual_seed(seed)


def on_device(t: torch.Tensor, device: str) -> bool:
    """Whether `t` lives on the kind of device asked for."""
    return t.device.type == torch.device(device).type
