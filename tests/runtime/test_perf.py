"""Throughput settings (lit_colorization/runtime/perf.py) and how ColorizationModule applies them."""

from __future__ import annotations

import copy
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_colorization import logs
from lit_colorization.color import ab_bins
from lit_colorization.config.loading import load_config
from lit_colorization.config.schema import PretrainConfig
from lit_colorization.data.encoded import CENTRE_CROP, EncodedCollate
from lit_colorization.models import create_model
from lit_colorization.pretrain.module import ColorizationModule
from lit_colorization.runtime import perf

CROP = 32


def tiny_module(*overrides: str) -> ColorizationModule:
    config = load_config(
        PretrainConfig,
        overrides=[
            "model.kwargs.width=0.125",
            f"data.crop_size={CROP}",
            "trainer.accelerator=cpu",
            *overrides,
        ],
    )
    bins = ab_bins()
    torch.manual_seed(0)
    return ColorizationModule(config, bins, torch.full((bins.shape[0],), 1.0 / bins.shape[0]))


def photo_batch(count: int = 3, seed: int = 0) -> torch.Tensor:
    smooth = torch.rand(count, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    upsampled = torch.nn.functional.interpolate(smooth, size=(CROP, CROP), mode="bilinear")
    return (upsampled * 255).round().to(torch.uint8)


def test_off_cuda_mixed_precision_and_compile_fall_back_said_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "_said", set())
    with caplog.at_level(logging.INFO, logger="lit_colorization"):
        settings = perf.resolve("cpu", "bf16-mixed", channels_last=True, compile=True, fused=True)
        again = perf.resolve("cpu", "bf16-mixed", channels_last=True, compile=True, fused=True)
    assert settings == again
    assert (settings.precision, settings.compile, settings.fused_adam, settings.tf32) == (
        "32-true",
        False,
        True,  # fused Adam runs on a CPU too: kept when asked for
        False,
    )
    assert settings.channels_last and settings.autocast_dtype is None
    assert not perf.resolve("cpu").fused_adam  # but not chosen there by default
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and "bf16-mixed" in messages[0] and "compile" in messages[0]
    assert perf.resolve("cpu", "auto").precision == "32-true"


def test_on_cuda_the_settings_are_what_was_asked() -> None:
    settings = perf.resolve("cuda", "bf16-mixed", channels_last=True, compile=True)
    assert (settings.precision, settings.compile, settings.fused_adam, settings.tf32) == (
        "bf16-mixed",
        True,
        True,
        True,
    )
    assert settings.autocast_dtype == torch.bfloat16
    assert not perf.resolve("cuda", "16-mixed", fused=False, tf32=False).fused_adam
    assert perf.resolve("cuda", "16-mixed").autocast_dtype == torch.float16


@pytest.mark.parametrize(
    ("call", "key"),
    [
        (lambda: perf.resolve("cpu", "bf16"), "trainer.precision"),
        (lambda: perf.device_type("tpu"), "trainer.accelerator"),
    ],
)
def test_bad_settings_name_the_config_key(call, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        call()


def test_device_type_follows_what_is_available() -> None:
    assert perf.device_type("cpu") == "cpu"
    available = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert perf.device_type("auto") == available
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no such device"):
            perf.device_type("cuda")


def test_module_settings_come_from_the_config() -> None:
    module = tiny_module("trainer.precision=bf16-mixed", "trainer.compile=true", "trainer.channels_last=true")
    # accelerator=cpu: fp32 eager, whatever the config asked for CUDA.
    assert (module.perf.precision, module.perf.compile, module.perf.channels_last) == ("32-true", False, True)
    assert all(
        parameter.is_contiguous(memory_format=torch.channels_last)
        for parameter in module.net.parameters()
        if parameter.ndim == 4
    )
    assert not module.configure_optimizers()["optimizer"].defaults["fused"]


def loss_and_gradients(module: ColorizationModule, rgb: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    loss = module.forward_loss(module.targets(rgb))
    loss.backward()
    return loss.item(), [
        parameter.grad.clone() for parameter in module.net.parameters() if parameter.grad is not None
    ]


def test_channels_last_gives_the_loss_and_gradients_of_the_plain_layout() -> None:
    rgb = photo_batch()
    plain_loss, plain_grads = loss_and_gradients(tiny_module(), rgb)
    last_loss, last_grads = loss_and_gradients(tiny_module("trainer.channels_last=true"), rgb)
    assert plain_loss > 0 and last_loss == pytest.approx(plain_loss, rel=1e-5)
    assert len(last_grads) == len(plain_grads)
    # The two layouts use different convolution kernels, which sum in different orders (float32: ~1e-4 apart).
    for plain, last in zip(plain_grads, last_grads, strict=True):
        assert (last - plain).norm() <= 1e-3 * plain.norm()


def test_compile_is_in_place_and_keeps_state_dict_keys() -> None:
    network = create_model("eccv16", width=0.125)
    state = copy.deepcopy(network.state_dict())
    settings = perf.PerfSettings(
        "cpu", "32-true", channels_last=False, compile=True, fused_adam=False, tf32=False
    )
    assert perf.apply_to_network(network, settings) is network
    assert list(network.state_dict()) == list(state)
    network.load_state_dict(state, strict=True)


@pytest.mark.slow
def test_compiled_network_gives_the_loss_of_the_eager_one() -> None:
    rgb = photo_batch()
    eager = tiny_module()
    compiled = tiny_module()
    settings = perf.PerfSettings(
        "cpu", "32-true", channels_last=False, compile=True, fused_adam=False, tf32=False
    )
    perf.apply_to_network(compiled.net, settings)
    eager_loss, eager_grads = loss_and_gradients(eager, rgb)
    compiled_loss, compiled_grads = loss_and_gradients(compiled, rgb)
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-4)
    for eager_grad, compiled_grad in zip(eager_grads, compiled_grads, strict=True):
        assert (compiled_grad - eager_grad).norm() <= 1e-3 * eager_grad.norm()


def test_fused_adam_is_chosen_by_the_settings() -> None:
    parameters = [torch.nn.Parameter(torch.zeros(3))]
    fused = perf.PerfSettings(
        "cpu", "32-true", channels_last=False, compile=False, fused_adam=True, tf32=False
    )
    assert perf.adam(parameters, 1e-3, (0.9, 0.99), 0.0, fused).defaults["fused"]
    plain = perf.resolve("cpu")
    assert not perf.adam(parameters, 1e-3, (0.9, 0.99), 0.0, plain).defaults["fused"]


def jpeg_sample(seed: int, label: int) -> tuple[torch.Tensor, torch.Tensor, int, str]:
    pixels = np.asarray(Image.fromarray(photo_batch(1, seed)[0].permute(1, 2, 0).numpy()).resize((48, 40)))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    raw = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    return raw, torch.tensor(CENTRE_CROP), label, f"photo{seed}.jpg"


def test_module_with_device_decoding_turns_jpeg_batches_into_crops_before_the_transfer(
    tmp_path: Path,
) -> None:
    module = tiny_module("data.decode=gpu")
    batch = EncodedCollate()([jpeg_sample(1, 3), jpeg_sample(2, 4)])
    batch = module.on_before_batch_transfer(batch, 0)
    assert (
        "jpeg" not in batch and batch["rgb"].shape == (2, 3, CROP, CROP) and batch["label"].tolist() == [3, 4]
    )
    targets = module.on_after_batch_transfer(batch, 0)["targets"]
    assert torch.isfinite(module.forward_loss(targets))
    plain = {"rgb": photo_batch(2), "label": torch.zeros(2, dtype=torch.int64), "skipped": torch.tensor(0)}
    assert tiny_module().on_before_batch_transfer(plain, 0) is plain
