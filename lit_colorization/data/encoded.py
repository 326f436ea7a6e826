"""JPEG files decoded and cropped on the training device, a whole batch at a time (``data.decode=gpu``).

Workers do the least they can: read a file's bytes, glance at its header, and draw the crop's random numbers
from ``sample_rng(seed, epoch, index)``. The device then decodes the batch (on CUDA one nvJPEG call for all
of it; elsewhere torchvision's CPU decoder) and cuts all crops in one pass of a fixed number of kernels,
whatever the image sizes: no per-image resize or crop calls.

Crops follow the rule of the CPU path (``crops.py``): the photo scaled by ``resize`` if given (shorter side, or
squashed to a square), images smaller than the crop scaled up, then a ``crop_size`` square at a uniformly random
place (the centre for validation), mirrored with probability 1/2. Here scaling and cropping are one resampling
of a box of the original image (a rectangle when the resize squashes), and the place is drawn as a fraction of
the free room, as the size is known only after decoding. So the crops have the CPU path's distribution, not its
exact pixels.

A file that is not a plain JPEG (RGB or gray, upright, not oversized) is decoded in the worker by ``read_rgb``
(transparency, CMYK, 16-bit and EXIF orientation are handled there) and travels as pixels.
"""

from __future__ import annotations

import functools
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg

from lit_colorization.data.crops import Resize, sample_rng, to_chw_tensor
from lit_colorization.data.folder import SplitFilesDataset
from lit_colorization.data.images import UnreadableImageError, read_rgb
from lit_colorization.logs import say_once

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
EXIF_ORIENTATION = 0x0112
DEVICE_DECODABLE_MODES = frozenset({"RGB", "L"})
# (fraction of the free rows above the crop, the same for columns, 1.0 to mirror): the crop numbers.
CENTRE_CROP = (0.5, 0.5, 0.0)
# Bilinear taps per axis and output pixel at most: enough to average every source pixel for shrinking by
# up to 4x; stronger shrinking skips some pixels (a coarser average), keeping the work bounded.
MAX_TAPS = 4

# payload (bytes 1-D, or pixels 3 x H x W), crop numbers, label, file path (to name it if it cannot be decoded)
EncodedSample = tuple[Tensor, Tensor, int, str]


def is_plain_jpeg(raw: bytes) -> bool:
    """Whether the device decoder can take ``raw`` as it is: a JPEG in RGB or gray, upright, not oversized."""
    if not raw.startswith(JPEG_MAGIC):
        return False
    try:
        with Image.open(io.BytesIO(raw), formats=("JPEG",)) as image:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1) if "exif" in image.info else 1
            pixels = image.width * image.height
            return (
                image.mode in DEVICE_DECODABLE_MODES and orientation == 1 and pixels <= Image.MAX_IMAGE_PIXELS
            )
    except Exception:  # any header PIL refuses: read_rgb then decides, and reports, what the file is
        return False


def read_payload(path: str, strict: bool = False) -> Tensor | None:
    """A plain JPEG's bytes (1-D uint8), else the file decoded by ``read_rgb`` (3 x H x W uint8).

    None for an unreadable file (logged once), or ``UnreadableImageError`` when ``strict``.
    """
    try:
        with open(path, "rb") as stream:
            raw = stream.read()
    except OSError as error:
        if strict:
            raise UnreadableImageError(f"unreadable image {path}: {type(error).__name__}: {error}") from error
        log.warning("skipping unreadable image %s: %s", path, error)
        return None
    return payload_of(raw, path, strict)


def payload_of(raw: bytes, name: str, strict: bool = False) -> Tensor | None:
    """``read_payload`` of a file's bytes read already (``name`` names it in messages)."""
    if is_plain_jpeg(raw):
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    image = read_rgb(name, strict=strict, data=raw)
    return None if image is None else to_chw_tensor(image)


def crop_numbers(seed: int, epoch: int, index: int, train: bool) -> Tensor:
    """The crop numbers of image ``index`` in ``epoch``: random from (seed, epoch, index) when ``train``, else
    ``CENTRE_CROP``."""
    if not train:
        return torch.tensor(CENTRE_CROP, dtype=torch.float64)
    down, across, mirror = sample_rng(seed, epoch, index).random(3)
    return torch.tensor([down, across, float(mirror < 0.5)], dtype=torch.float64)


class EncodedImageFolderDataset(SplitFilesDataset):
    """The files of ``root/split_dir`` (as ``ImageFolderDataset`` lists them) as ``(payload, crop, label, path)``.

    ``crop`` is float64 (3,): the fractions down and across of the free room and a mirror flag, random from
    (seed, epoch, index) when ``train``, else ``CENTRE_CROP``. An unreadable file gives None.
    """

    def crop_numbers(self, index: int) -> Tensor:
        return crop_numbers(self.seed, self._epoch.value, index, self.train)

    def __getitem__(self, index: int) -> EncodedSample | None:
        path = self.path(index)
        payload = read_payload(path, self.strict)
        if payload is None:
            return None
        return payload, self.crop_numbers(index), int(self.labels[index]), path


@dataclass(frozen=True)
class EncodedCollate:
    """Collate for ``EncodedImageFolderDataset``: the JPEG bytes packed into one buffer, then the rest.

    Batch: ``{"jpeg": uint8 (total bytes,), "jpeg_lengths": int64 (J,), "jpeg_paths": [str] * J,
    "pixels": [3 x H x W uint8] * P, "crop": float64 (J + P, 3), "label": int64 (J + P,), "skipped": int64}``;
    samples are reordered JPEGs
    first, and crop and label follow that order. One buffer crosses from a worker as one shared-memory
    block, where a list of tensors would cost one per image.
    """

    def __call__(self, samples: Sequence[EncodedSample | None]) -> dict[str, Any]:
        kept = [sample for sample in samples if sample is not None]
        ordered = [s for s in kept if s[0].ndim == 1] + [s for s in kept if s[0].ndim != 1]
        jpegs = [sample for sample in ordered if sample[0].ndim == 1]
        return {
            "jpeg": torch.cat([payload for payload, *_ in jpegs])
            if jpegs
            else torch.empty(0, dtype=torch.uint8),
            "jpeg_lengths": torch.tensor([len(payload) for payload, *_ in jpegs], dtype=torch.int64),
            "jpeg_paths": [path for *_, path in jpegs],
            "pixels": [payload for payload, *_ in ordered if payload.ndim != 1],
            "crop": torch.stack([crop for _, crop, _, _ in ordered]) if ordered else torch.empty(0, 3),
            "label": torch.tensor([label for _, _, label, _ in ordered], dtype=torch.int64),
            "skipped": torch.tensor(len(samples) - len(kept), dtype=torch.int64),
        }


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device`` without the host waiting for the device's queued work.

    A plain copy from pageable memory makes the host wait until the device has finished everything queued
    before it (the previous training step), which leaves the device idle while the next step is prepared; a
    copy from pinned memory is queued like a kernel.
    """
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def decode_jpegs(data: Sequence[Tensor], device: torch.device) -> list[Tensor | None]:
    """RGB images (3 x H x W uint8 on ``device``) of JPEG byte tensors; None where one cannot be decoded.

    On CUDA the batch is one nvJPEG call. That call fails as a whole on one bad file; then each file is
    tried alone, on the device and then on the CPU.
    """
    if not data:
        return []
    if device.type != "cuda":
        return _decode_all(data, device)
    # torchvision allocates the decoded images on the current stream but nvJPEG writes them from a stream of its
    # own that does not wait for it. On the training stream that memory may be a block the step still in flight
    # reads (freed by the host, not yet by the device): once the loop stopped waiting for the device, an H200
    # run stopped at its second step with non-finite gradients. A side stream's memory pool holds no such block.
    training = torch.cuda.current_stream(device)
    side = _decode_stream(device)
    with torch.cuda.stream(side):
        images = _decode_all(data, device)
    training.wait_stream(side)
    for image in images:
        if image is not None:
            image.record_stream(training)  # its block returns to the side pool only once the step has used it
    return images


@functools.cache
def _decode_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device)


def _decode_all(data: Sequence[Tensor], device: torch.device) -> list[Tensor | None]:
    try:
        return list(decode_jpeg(list(data), mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        return [_decode_one(item, device) for item in data]


def _decode_one(data: Tensor, device: torch.device) -> Tensor | None:
    for decoder_device in dict.fromkeys((device, torch.device("cpu"))):
        try:
            return to_device(decode_jpeg(data, mode=ImageReadMode.RGB, device=decoder_device), device)
        except RuntimeError:
            continue
    return None


def crop_boxes(
    heights: Tensor, widths: Tensor, crop: Tensor, crop_size: int, resize: Resize | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(top, left, box height, box width) of each crop's box in source pixels (float64), from the crop numbers.

    The box is what ``crop_size`` x ``crop_size`` pixels are after the CPU path's scaling (``resize``, then an
    enlargement of anything still smaller than the crop); square unless ``resize`` squashes. Top and left are
    whole pixels, uniform over the places the box fits, so a box of side ``crop_size`` is an exact window.
    """
    heights, widths = heights.to(torch.float64), widths.to(torch.float64)
    if resize is None:
        down = across = torch.ones_like(heights)
        shorter = torch.minimum(heights, widths)
    else:  # either mode makes the shorter side resize.size pixels
        down, across = resize.source_pixels_per_pixel(heights, widths)
        shorter = torch.full_like(heights, resize.size)
    # The crop takes crop_size of the scaled pixels, or the whole shorter side where that is smaller (enlarged).
    window = shorter.clamp(max=crop_size)
    box_heights, box_widths = down * window, across * window
    crop = crop.to(torch.float64)

    def place(fraction: Tensor, extent: Tensor, box: Tensor) -> Tensor:
        return torch.minimum((fraction * (extent - box + 1)).floor(), extent - box).clamp(min=0)

    return (
        place(crop[:, 0], heights, box_heights),
        place(crop[:, 1], widths, box_widths),
        box_heights,
        box_widths,
    )


def resized_crops(
    images: Sequence[Tensor],
    top: Tensor,
    left: Tensor,
    box_height: Tensor,
    box_width: Tensor,
    mirror: Tensor,
    size: int,
) -> Tensor:
    """Each image's box ``[top, top + box_height) x [left, left + box_width)`` resampled to ``size`` x ``size``:
    uint8 B x 3 x S x S.

    ``images`` are 3 x H x W uint8 of any sizes on one device; the box numbers are (B,) CPU tensors, and
    ``mirror`` (B,) flips a crop left-right where non-zero. Each output pixel averages taps x taps bilinear
    samples spread evenly over the source rectangle it covers (taps = the batch's largest shrink factor along
    either axis, rounded up, at most ``MAX_TAPS``): bilinear when enlarging, the mean of each k x k block when
    shrinking by a whole factor k, and the pixels themselves for a box of side ``size`` at whole-pixel places.

    One pass whatever the taps: the images are joined into one flat buffer, the four bilinear neighbours of
    every sample of every tap in every channel are read by one ``index_select``, weighted along rows and
    columns (three lerps), and the taps averaged by one pooling; about 20 kernels for the whole batch, where reading tap by
    tap took 16 gathers per tap pair. The price is memory: about ``B * 3 * (S * taps)^2 * 40`` bytes at once
    (2 GB for 128 crops of 176 at 2 taps, 0.7 GB for the eccv16 preset's 40).
    """
    device = images[0].device
    heights = torch.tensor([image.shape[-2] for image in images], dtype=torch.int64)
    widths = torch.tensor([image.shape[-1] for image in images], dtype=torch.int64)
    plane = heights * widths
    start = torch.cumsum(3 * plane, 0) - 3 * plane  # where each image begins in the flat buffer
    row_scale = box_height.to(torch.float64) / size
    col_scale = box_width.to(torch.float64) / size
    largest = max(float(row_scale.max()), float(col_scale.max()))
    taps = min(MAX_TAPS, max(1, math.ceil(largest - 1e-9)))
    flat = torch.cat([image.reshape(-1) for image in images])  # views joined by one copy
    # index_select takes 32-bit indices, half the memory of take's 64-bit ones, when the buffer allows.
    index_dtype = torch.int32 if flat.numel() < 2**31 else torch.int64

    numbers = torch.stack([top, left, row_scale, col_scale, heights, widths, mirror], dim=1).to(torch.float64)
    top_d, left_d, row_scale_d, col_scale_d, height_d, width_d, mirror_d = to_device(
        numbers.float(), device
    ).T[:, :, None]
    plane_base = start[:, None] + torch.arange(3) * plane[:, None]  # (B, 3): where each channel begins
    plane_base = to_device(plane_base, device).to(index_dtype)[:, :, None, None]
    row_stride = to_device(widths, device).to(index_dtype)[:, None, None, None]
    # Sample positions in output-pixel units, pixel by pixel and taps within a pixel: (S * taps,).
    steps = torch.arange(size, device=device)[:, None] + (torch.arange(taps, device=device) + 0.5) / taps
    steps = steps.reshape(-1)
    rows = (top_d + steps * row_scale_d - 0.5).clamp(min=0)
    cols = (left_d + steps * col_scale_d - 0.5).clamp(min=0)
    cols = torch.where(mirror_d > 0, cols.flip(-1), cols)
    rows = torch.minimum(rows, height_d - 1)
    cols = torch.minimum(cols, width_d - 1)

    def neighbours(position: Tensor, extent: Tensor) -> tuple[Tensor, Tensor]:
        """(2, B, S * taps): the lower and upper source pixel of each sample; (B, S * taps): its fraction."""
        low = position.floor()
        high = torch.minimum(low + 1, extent - 1)
        return torch.stack([low, high]).to(index_dtype), position - low

    row_index, row_fraction = neighbours(rows, height_d)
    col_index, col_fraction = neighbours(cols, width_d)
    # (2, 2, B, 3, S * taps, S * taps): upper/lower row, left/right column, image, channel, sample row and column;
    # the neighbours lead, so that each is one contiguous block for the interpolation.
    index = (
        plane_base + row_index[:, None, :, None, :, None] * row_stride + col_index[None, :, :, None, None, :]
    )
    values = flat.index_select(0, index.reshape(-1)).view(index.shape).to(torch.float32)
    col_fraction = col_fraction[:, None, None, :]
    upper = torch.lerp(values[0, 0], values[0, 1], col_fraction)
    lower = torch.lerp(values[1, 0], values[1, 1], col_fraction)
    samples = torch.lerp(upper, lower, row_fraction[:, None, :, None])  # (B, 3, S * taps, S * taps)
    total = F.avg_pool2d(samples, taps) if taps > 1 else samples
    return total.round_().clamp_(0, 255).to(torch.uint8)


class DeviceCropper:
    """Turns an ``EncodedCollate`` batch into the usual one: ``rgb`` uint8 (B, 3, S, S) on the device.

    Unreadable images leave the batch (their labels too) and are added to ``skipped``; with ``strict`` they
    raise instead.
    """

    def __init__(self, crop_size: int, resize: Resize | None = None, strict: bool = False) -> None:
        self.crop_size = crop_size
        self.resize = resize
        self.strict = strict

    def __call__(self, batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
        device = torch.device(device)
        if device.type != "cuda":
            say_once(f"data.decode=gpu on {device.type}: JPEGs are decoded by torchvision's CPU decoder")
        jpegs = (
            list(batch["jpeg"].split(batch["jpeg_lengths"].tolist())) if len(batch["jpeg_lengths"]) else []
        )
        images = decode_jpegs(jpegs, device) + [to_device(pixels, device) for pixels in batch["pixels"]]
        decoded = torch.tensor([image is not None for image in images], dtype=torch.bool)
        # Only JPEGs can fail here (they come first, in the order of their paths).
        jpeg_images = images[: len(jpegs)]
        undecodable = [
            path for path, image in zip(batch["jpeg_paths"], jpeg_images, strict=True) if image is None
        ]
        for path in undecodable:
            message = f"unreadable image {path}: the JPEG decoder on {device} could not decode it"
            if self.strict:
                raise UnreadableImageError(message)
            log.warning("skipping %s", message)
        failed = len(undecodable)
        kept = [image for image in images if image is not None]
        rest = {
            key: value
            for key, value in batch.items()
            if key not in ("jpeg", "jpeg_lengths", "jpeg_paths", "pixels", "crop")
        }
        rest["label"] = to_device(batch["label"][decoded], device)
        rest["skipped"] = batch["skipped"] + failed
        if not kept:
            rest["rgb"] = torch.empty(0, 3, self.crop_size, self.crop_size, dtype=torch.uint8, device=device)
            return rest
        crop = batch["crop"][decoded]
        heights = torch.tensor([image.shape[-2] for image in kept])
        widths = torch.tensor([image.shape[-1] for image in kept])
        top, left, box_height, box_width = crop_boxes(heights, widths, crop, self.crop_size, self.resize)
        rest["rgb"] = resized_crops(kept, top, left, box_height, box_width, crop[:, 2], self.crop_size)
        return rest
