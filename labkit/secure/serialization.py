"""Why a pickled checkpoint is dangerous, and the loaders that refuse it: weights_only and safetensors.

`torch.save` writes a pickle, and unpickling calls whatever callable the file names, with arguments the file
chooses (`__reduce__`). A checkpoint from a stranger is therefore a program. `torch.load(weights_only=True)`
unpickles only tensors and plain containers; safetensors has no code path at all: a JSON header and raw bytes.
Taught in 15_security_and_privacy.
"""
from __future__ import annotations

import pickle
import pickletools
import statistics
import time
import zipfile
from pathlib import Path

import torch

from labkit.secure.errors import UnsafeCheckpointError


class _MarkerPayload:
    """Unpickling this calls builtins.exec on a line that writes a marker file: harmless, and proof code ran."""

    def __init__(self, marker: Path):
        self.code = f"open({str(marker)!r}, 'w').write('written by code inside a checkpoint\\n')"

    def __reduce__(self):
        return exec, (self.code,)  # an attacker would put any code here


def write_crafted_checkpoint(path: str | Path, state_dict: dict, marker: str | Path) -> Path:
    """A checkpoint that looks normal (it holds `state_dict`) but writes `marker` when unpickled."""
    path = Path(path)
    torch.save({"model": state_dict, "epoch": 3, "note": _MarkerPayload(Path(marker))}, path)
    return path


def pickle_globals(path: str | Path) -> list[str]:
    """Every "module.name" a checkpoint's pickle would import and may call, read without unpickling anything."""
    with zipfile.ZipFile(path) as archive:  # torch.save writes a zip whose data.pkl is the pickle
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    found, strings = [], []
    for opcode, arg, _ in pickletools.genops(pickled):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}.{strings[-1]}")
        elif opcode.name == "GLOBAL":
            found.append(arg.replace(" ", "."))
    return sorted(set(found))


def unsafe_load(path: str | Path) -> object:
    """torch.load(weights_only=False): runs whatever the file says. Shown once in 15 §1; never do this."""
    return torch.load(path, map_location="cpu", weights_only=False)


def safe_load(path: str | Path) -> dict:
    """torch.load(weights_only=True): tensors and plain containers only, UnsafeCheckpointError otherwise."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeCheckpointError(f"{path} holds more than tensors and plain containers; refused without "
                                    f"running it (weights_only=True): {first}") from None


def save_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write a state dict as safetensors (tensors only: anything else is refused when writing)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous() if isinstance(v, torch.Tensor) else v for k, v in state_dict.items()}
    save_file(tensors, str(path))  # anything that is not a tensor raises here, inside safetensors
    return path


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file: parses a JSON header and copies bytes, never calls anything the file names."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise UnsafeCheckpointError(f"{path} is not a valid safetensors file: {err}") from None


def _median_ms(load, path: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        load(path)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def load_times_ms(state_dict: dict[str, torch.Tensor], folder: str | Path, repeats: int = 20) -> dict[str, float]:
    """Median load time of one state dict as torch.save (weights_only=True) and as safetensors, side by side."""
    folder = Path(folder)
    pt, st = folder / "model.pt", folder / "model.safetensors"
    torch.save(state_dict, pt)
    save_safetensors(state_dict, st)
    interleaved = {"torch.load(weights_only=True)": [], "safetensors load_file": []}
    for _ in range(repeats):  # alternate the two so a burst of noise hits both
        interleaved["torch.load(weights_only=True)"].append(_median_ms(safe_load, pt, 1))
        interleaved["safetensors load_file"].append(_median_ms(load_safetensors, st, 1))
    return {name: statistics.median(ms) for name, ms in interleaved.items()}
