"""The one place where pretraining checkpoints are described, read and turned back into networks.

A checkpoint is a Lightning checkpoint whose ``lit_colorization`` entry says everything needed to rebuild the
colorizer from the file alone: network name and constructor arguments, ab bins, prior and the resolved config, all
as plain containers and tensors so ``torch.load(..., weights_only=True)`` accepts it. Every checkpoint is written
atomically (a crash while saving leaves the previous file as it was) and never with non-finite weights.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor, nn

from lit_colorization.models import ColorizationNet, create_model
from lit_colorization.models.alexnet import (
    OLD_SCALING_MESSAGE,
    PRE_RELEASE_MESSAGE,
    AlexNetColorizer,
    is_pre_release_state_dict,
)
from lit_colorization.models.base import INPUT_DIVISORS, PORT_SCALING
from lit_colorization.store.atomic import atomic_open

CHECKPOINT_KEY = "lit_colorization"
FORMAT_VERSION = 1
NETWORK_PREFIX = "net."
# What each field of the ``CHECKPOINT_KEY`` entry must be, checked before any is used.
ENTRY_FIELDS: dict[str, tuple[type, ...]] = {
    "model_name": (str,),
    "model_kwargs": (dict,),
    "bins": (Tensor,),
    "prior": (Tensor, type(None)),
    "config": (dict,),
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a one-line message naming the file."""


@dataclass(frozen=True)
class PretrainedColorizer:
    """What a pretraining checkpoint holds, independent of the LightningModule that wrote it."""

    path: str
    model_name: str
    model_kwargs: dict[str, Any]
    bins: Tensor
    prior: Tensor | None
    config: dict[str, Any]
    state_dict: dict[str, Tensor]
    global_step: int


def describe(
    model_name: str,
    model_kwargs: dict[str, Any],
    bins: Tensor,
    prior: Tensor | None,
    config: dict[str, Any],
    input_scaling: str,
) -> dict[str, Any]:
    """The self-describing entry stored under ``CHECKPOINT_KEY`` in every pretraining checkpoint."""
    return {
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "input_scaling": input_scaling,
        "model_kwargs": dict(model_kwargs),
        "bins": bins.detach().cpu().float(),
        "prior": None if prior is None else prior.detach().cpu().float(),
        "config": config,
    }


def load_raw(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``, turning every failure into a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    try:
        loaded = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError) as error:
        # torch's messages go on for several sentences of advice; the first says what is wrong.
        reason = str(error).splitlines()[0].split(". ")[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (truncated or corrupt?): {reason}"
        ) from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dictionary, found {type(loaded).__name__}")
    return loaded


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> PretrainedColorizer:
    raw = load_raw(path, map_location)
    entry = raw.get(CHECKPOINT_KEY)
    if entry is None or "state_dict" not in raw:
        raise CheckpointError(
            f"{path}: not a lit-colorization pretraining checkpoint (no '{CHECKPOINT_KEY}' entry); "
            "the authors' released eccv16 weights are read by colorize --weights-format official"
        )
    if not isinstance(entry, dict):
        raise CheckpointError(
            f"{path}: its '{CHECKPOINT_KEY}' entry is a {type(entry).__name__}, expected a dictionary "
            "(a damaged or hand-edited checkpoint)"
        )
    if entry.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {entry.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    for key, types in ENTRY_FIELDS.items():
        if key not in entry or not isinstance(entry[key], types):
            found = f"a {type(entry[key]).__name__}" if key in entry else "missing"
            expected = " or ".join(kind.__name__ for kind in types)
            raise CheckpointError(
                f"{path}: its '{CHECKPOINT_KEY}' entry's '{key}' is {found}, expected {expected} "
                "(a damaged or hand-edited checkpoint)"
            )
    if not isinstance(raw["state_dict"], dict):
        raise CheckpointError(
            f"{path}: its 'state_dict' is a {type(raw['state_dict']).__name__}, expected a dictionary"
        )
    network_state = {
        key[len(NETWORK_PREFIX) :]: value
        for key, value in raw["state_dict"].items()
        if key.startswith(NETWORK_PREFIX)
    }
    if not network_state:
        raise CheckpointError(f"{path}: checkpoint holds no network weights (no '{NETWORK_PREFIX}*' keys)")
    # Here rather than in build_network, so that resuming such a run fails with the same one line.
    if entry["model_name"] == "alexnet" and is_pre_release_state_dict(network_state):
        raise CheckpointError(f"{path}: {PRE_RELEASE_MESSAGE}")
    # Rows of other networks written before the scaling was recorded used the scaling they still use.
    if entry["model_name"] == "alexnet" and entry.get("input_scaling") != AlexNetColorizer.input_scaling:
        raise CheckpointError(f"{path}: {OLD_SCALING_MESSAGE}")
    if entry.get("input_scaling", PORT_SCALING) not in INPUT_DIVISORS:
        raise CheckpointError(
            f"{path}: unknown input scaling {entry.get('input_scaling')!r}, expected one of {list(INPUT_DIVISORS)}"
        )
    return PretrainedColorizer(
        path=str(path),
        model_name=entry["model_name"],
        model_kwargs=dict(entry["model_kwargs"]),
        bins=entry["bins"],
        prior=entry["prior"],
        config=entry["config"],
        state_dict=network_state,
        global_step=int(raw.get("global_step", 0)),
    )


def load_state_strict(module: nn.Module, state_dict: dict[str, Tensor], source: str) -> None:
    """Load every key or fail naming the missing, unexpected and mis-shaped ones (never a silent partial load),
    and never weights that are not tensors or not finite (a NaN spreads to every output)."""
    not_tensors = sorted(key for key, value in state_dict.items() if not isinstance(value, Tensor))
    if not_tensors:
        raise CheckpointError(f"{source}: weights that are not tensors: {_some(not_tensors)}")
    non_finite = non_finite_entries(state_dict)
    if non_finite:
        raise CheckpointError(
            f"{source}: weights are not finite (NaN or infinity) in {_some(non_finite)}; refusing to load them"
        )
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mis_shaped = sorted(
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(own[key].shape)}"
        for key in set(own) & set(state_dict)
        if own[key].shape != state_dict[key].shape
    )
    if missing or unexpected or mis_shaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mis_shaped)):
            if keys:
                parts.append(f"{label}: {_some(keys)}")
        raise CheckpointError(f"{source}: weights do not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def build_network(colorizer: PretrainedColorizer) -> ColorizationNet:
    """The network of a checkpoint, weights loaded strictly, in eval mode."""
    try:
        network = create_model(colorizer.model_name, **colorizer.model_kwargs)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{colorizer.path}: cannot rebuild network: {error}") from None
    load_state_strict(network, colorizer.state_dict, colorizer.path)
    return network.eval()


def write_checkpoint(
    path: str | Path, network: ColorizationNet, bins: Tensor, prior: Tensor | None, config: dict[str, Any]
) -> Path:
    """A pretraining-format checkpoint of ``network`` alone (e.g. converted released weights), written atomically."""
    checkpoint = {
        "state_dict": {
            NETWORK_PREFIX + key: value.detach().cpu() for key, value in network.state_dict().items()
        },
        CHECKPOINT_KEY: describe(
            network.model_name, network.hparams_for_checkpoint(), bins, prior, config, network.input_scaling
        ),
        "global_step": 0,
    }
    path = Path(path)
    with atomic_open(path, "wb") as stream:
        torch.save(checkpoint, stream)
    return path


def _some(keys: list[str], limit: int = 5) -> str:
    """The first ``limit`` of ``keys`` and how many more there are, for a one-line message."""
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def non_finite_entries(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding a NaN or an infinity."""
    return [
        key
        for key, value in state_dict.items()
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic and refusing non-finite weights.

    Lightning's own save goes through an fsspec transaction whose temporary file is made in the system temp
    folder; when that is another filesystem than the run folder (a tmpfs /tmp, a node-local disk) the final
    move is a plain copy onto the target, so a crash during it leaves a truncated ``last.ckpt``. Here the
    temporary file sits beside the target, is flushed to disk, then renamed over it.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        bad = non_finite_entries(checkpoint.get("state_dict", {}))
        if bad:
            raise CheckpointError(
                f"{path}: refusing to write a checkpoint with non-finite weights ({_some(bad, 3)}); "
                "the previous file is kept"
            )
        with atomic_open(path, "wb") as stream:
            torch.save(checkpoint, stream)


def weights_checksum(module: nn.Module) -> str:
    """SHA-256 of ``module``'s state (names, dtypes, shapes and values, in order): what a frozen trunk's probe
    checkpoint and cached features are keyed by, so that they are never used with other weights."""
    digest = hashlib.sha256()
    for name, value in module.state_dict().items():
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
