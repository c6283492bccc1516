"""Weights, kept apart from the architecture: safetensors files, strict loading with errors that name keys.

External ``.pt``/``.pth`` checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain
containers only, never arbitrary pickled objects.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import load_file, save_file
from torch import nn

SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pt", ".pth")
_KEYS_NAMED = 5  # an error names this many keys of each kind, then counts the rest


class WeightsError(ValueError):
    """A weights file that does not fit the model (or is not a weights file); the message names keys and file."""


def save_weights(model: nn.Module, path: str | Path, *, fp16: bool) -> None:
    """Write ``model.state_dict()`` to a ``.safetensors`` file; ``fp16`` halves floating tensors (not counters)."""
    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise ValueError(f"weights are saved as {SAFETENSORS_SUFFIX}, got {path}")
    tensors = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if fp16 and tensor.is_floating_point():
            tensor = tensor.half()
        tensors[key] = tensor.contiguous()
    save_file(tensors, str(path), metadata={"format": "pt", "dtype": "float16" if fp16 else "float32"})


def _not_safetensors(path: str | Path, error: Exception) -> WeightsError:
    # The library's own message ("header too large") names neither the file nor what it wanted.
    return WeightsError(f"{path}: not a safetensors file ({error}); expected weights in the safetensors format "
                        f"(a pickle, a .pt checkpoint or a truncated download is not one)")


def state_dict_from_bytes(data: bytes, *, source: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of safetensors bytes already read (and hashed) by the caller; ``source`` names them in errors."""
    try:
        return load_safetensors_bytes(data)
    except SafetensorError as error:
        raise _not_safetensors(source, error) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.pt``/``.pth`` checkpoint (a ``"state_dict"`` entry is unwrapped)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (SAFETENSORS_SUFFIX, *TORCH_SUFFIXES):
        expected = ", ".join((SAFETENSORS_SUFFIX, *TORCH_SUFFIXES))
        raise WeightsError(f"{path}: unknown weights format; expected one of {expected}")
    if not path.is_file():  # a directory reads as "No such device", naming nothing
        raise WeightsError(f"{path}: no such weights file")
    if suffix == SAFETENSORS_SUFFIX:
        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as error:
            raise _not_safetensors(path, error) from None
        except OSError as error:
            raise WeightsError(f"{path}: weights not readable: {error}") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(f"{path}: not a plain tensor checkpoint (refused to unpickle objects): {error}") from error
    except (EOFError, KeyError, RuntimeError, OSError) as error:  # empty, text, truncated zip
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error}); "
                           f"expected a file written by torch.save") from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]  # training checkpoints wrap the weights next to epoch/optimizer entries
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{path}: expected a mapping of names to tensors, got {type(loaded).__name__}")
    not_tensors = [str(key) for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{path}: entries that are not tensors: {_name_some(not_tensors)}")
    return dict(loaded)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Strictly load a weights file into ``model``; raises ``WeightsError`` on any key or shape mismatch."""
    load_state_dict_strict(model, read_state_dict(path), source=str(path))


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load only if keys and shapes match exactly. Floating tensors are cast to the model's dtypes (fp16 files)."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"{key} (file {tuple(state_dict[key].shape)}, model {tuple(target.shape)})"
        for key, target in expected.items()
        if key in state_dict and state_dict[key].shape != target.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_name_some(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_name_some(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_name_some(mismatched)}")
    if problems:
        raise WeightsError(f"{source} does not fit the model: " + "; ".join(problems))

    cast = {
        key: tensor.to(expected[key].dtype) if tensor.is_floating_point() else tensor
        for key, tensor in state_dict.items()
    }
    model.load_state_dict(cast, strict=True)


def _name_some(keys: list[str]) -> str:
    named = ", ".join(keys[:_KEYS_NAMED])
    rest = len(keys) - _KEYS_NAMED
    return f"{named} (and {rest} more)" if rest > 0 else named
