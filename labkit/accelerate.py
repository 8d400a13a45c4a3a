"""Device choice and a report of the machine the course runs on."""
from __future__ import annotations

import os
import platform

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when present (or asked for), else CPU; LABKIT_DEVICE overrides. Taught in 00_welcome."""
    name = prefer or os.environ.get("LABKIT_DEVICE")
    if name:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def environment_report() -> dict[str, str]:
    """Versions, cores, threads and accelerators: the facts every measurement depends on. Taught in 00_welcome."""
    import numpy, sklearn, torchvision  # imported here: only the report needs their versions

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "cpu cores (os)": str(os.cpu_count()),
        "cpu cores usable": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "?",
        "torch intra-op threads": str(torch.get_num_threads()),
        "torch inter-op threads": str(torch.get_num_interop_threads()),
        "cuda available": str(cuda),
        "gpu": torch.cuda.get_device_name(0) if cuda else "none",
    }
