"""Batches prepared one step ahead: decoding, cropping and targets of batch n+1 issued while step n runs.

With ``data.decode=gpu`` the training loop used to turn each batch of JPEG bytes into crops and targets on the
device right before its step, in series with it: about 14 ms of nvJPEG host time and the launches of the crop
and target kernels per 128 images, during which nothing new reached the device. ``PreparedAhead`` runs that
preparation in a thread of its own, ``depth`` batches ahead of the loop, and on CUDA on a side stream: the
device works on the next batch's decoding while the current step's kernels run, and the host's decoder calls
(which release the GIL) overlap the loop's Python.

Hand-over on CUDA: the thread records an event on its stream after a batch's last kernel; the consumer makes its
current stream wait for that event (a device-side wait, the host does not block) and calls ``record_stream`` on
every tensor of the batch, so that the side stream's allocator does not hand their memory out again before the
training stream is done with them. Order and content are those of the plain loop: one thread, a FIFO queue,
the same ``prepare`` on the same batches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor

# Seconds between the producer's checks that the consumer is still there, while its queue is full.
POLL_SECONDS = 0.1
# Seconds the consumer waits, when it stops early, for the thread to finish the batch it is preparing.
JOIN_SECONDS = 30.0
_FINISHED = object()


class PreparedAhead:
    """``loader``'s batches passed through ``prepare(batch)`` by a thread, up to ``depth`` batches ahead.

    Looks like the loader to Lightning: its length, ``sampler`` and ``batch_sampler`` (whose ``set_epoch``
    Lightning calls each epoch) and ``dataset`` are the loader's. Nothing starts before the first batch is
    asked for; an error in ``prepare`` or in the loader is raised in the consumer, at the batch it concerns.
    """

    def __init__(
        self, loader: Iterable, prepare: Callable[[Any], Any], device: torch.device | str, depth: int = 1
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth: expected an integer >= 1, got {depth}")
        self.loader = loader
        self.prepare = prepare
        self.device = torch.device(device)
        self.depth = depth

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def sampler(self) -> Any:
        return getattr(self.loader, "sampler", None)

    @property
    def batch_sampler(self) -> Any:
        return getattr(self.loader, "batch_sampler", None)

    @property
    def dataset(self) -> Any:
        return getattr(self.loader, "dataset", None)

    # Lightning stops a loader's worker processes at the end of a fit through its ``_iterator`` (the iterator a
    # DataLoader with persistent workers keeps): it shuts down a multiprocessing one and sets it to None. The
    # loader's own, so that its workers (which ignore SIGTERM) do not outlive the fit and hang the exit.
    @property
    def _iterator(self) -> Any:
        return getattr(self.loader, "_iterator", None)

    @_iterator.setter
    def _iterator(self, value: Any) -> None:
        if hasattr(self.loader, "_iterator"):
            self.loader._iterator = value

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        handoff: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        thread = threading.Thread(
            target=_produce,
            args=(iter(self.loader), self.prepare, self.device, handoff, stop),
            name="prepared-ahead",
            daemon=True,
        )
        thread.start()
        try:
            while True:
                item = handoff.get()
                if item is _FINISHED:
                    return
                prepared, event, error = item
                if error is not None:
                    raise error
                if event is not None:
                    _take_over(prepared, event, self.device)
                yield prepared
        finally:
            # The consumer stopped (end of the epoch, max_steps, an error): the thread ends at its next hand-over.
            stop.set()
            _drain(handoff)
            thread.join(JOIN_SECONDS)


def _produce(
    batches: Iterator[Any],
    prepare: Callable[[Any], Any],
    device: torch.device,
    handoff: queue.Queue,
    stop: threading.Event,
) -> None:
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    try:
        for batch in batches:
            if stop.is_set():
                return
            event = None
            if stream is None:
                prepared = prepare(batch)
            else:
                with torch.cuda.device(device), torch.cuda.stream(stream):
                    prepared = prepare(batch)
                    event = torch.cuda.Event()
                    event.record(stream)
            if not _put(handoff, (prepared, event, None), stop):
                return
        _put(handoff, _FINISHED, stop)
    except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
        _put(handoff, (None, None, error), stop)


def _put(handoff: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Queue ``item`` once there is room; False if the consumer stopped first."""
    while not stop.is_set():
        try:
            handoff.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _drain(handoff: queue.Queue) -> None:
    while True:
        try:
            handoff.get_nowait()
        except queue.Empty:
            return


def _take_over(prepared: Any, event: torch.cuda.Event, device: torch.device) -> None:
    """Make the current stream wait (on the device) for the batch's event, and own the batch's memory."""
    current = torch.cuda.current_stream(device)
    current.wait_event(event)

    def own(tensor: Tensor) -> Tensor:
        if tensor.is_cuda:
            tensor.record_stream(current)
        return tensor

    apply_to_collection(prepared, Tensor, own)
