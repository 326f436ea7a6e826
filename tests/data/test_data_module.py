"""DataConfig validation and the DataModule: loaders, batches, epochs reaching workers, DDP sharding."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch import LightningModule
from omegaconf import OmegaConf
from PIL import Image

from lit_colorization.data import (
    ColorizationDataModule,
    DataConfig,
    SeededShuffleSampler,
    SyntheticColorDataset,
    build_datamodule,
    validate_data_config,
)
from lit_colorization.data.datamodule import evenly_spaced_indices
from lit_colorization.data.sampling import SHUFFLE_STREAM
from tests.helpers import bare_trainer

CROP = 24
SYNTHETIC = DataConfig(
    source="synthetic",
    crop_size=CROP,
    synthetic_size=40,
    synthetic_train_images=16,
    synthetic_val_images=6,
    batch_size=4,
    num_workers=0,
    seed=7,
)


def epoch_crops(cfg: DataConfig, epoch: int, indices: list[int]) -> torch.Tensor:
    """Training crops computed directly in this process: what the loader must deliver for `epoch`."""
    dataset = SyntheticColorDataset(
        cfg.synthetic_train_images, cfg.synthetic_size, cfg.crop_size, split="train", seed=cfg.seed
    )
    dataset.set_epoch(epoch)
    return torch.stack([dataset[index][0] for index in indices])


def shuffled_order(seed: int, epoch: int, length: int) -> list[int]:
    return np.random.default_rng([SHUFFLE_STREAM, seed, epoch]).permutation(length).tolist()


# ---------------------------------------------------------------- config


def test_defaults_match_the_paper_recipe_and_work_as_a_structured_config() -> None:
    cfg = DataConfig()
    assert (cfg.source, cfg.crop_size, cfg.batch_size, cfg.resize) == ("embedded", 176, 40, None)
    structured = OmegaConf.structured(DataConfig)
    merged = OmegaConf.merge(structured, OmegaConf.from_dotlist(["crop_size=64", "resize=80"]))
    validate_data_config(merged)
    assert OmegaConf.to_object(merged) == replace(cfg, crop_size=64, resize=80)
    with pytest.raises(Exception, match="no_such_key"):
        OmegaConf.merge(structured, OmegaConf.from_dotlist(["no_such_key=1"]))


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ({"source": "imagenet"}, ValueError, "data.source must be one of embedded, folder, synthetic"),
        ({"crop_size": 0}, ValueError, "data.crop_size must be a positive integer"),
        ({"batch_size": -3}, ValueError, "data.batch_size must be a positive integer"),
        ({"crops_per_epoch": 0}, ValueError, "data.crops_per_epoch"),
        ({"val_crops": 0}, ValueError, "data.val_crops"),
        ({"synthetic_size": 0}, ValueError, "data.synthetic_size"),
        ({"resize": 0}, ValueError, "data.resize must be a positive integer"),
        ({"resize_mode": "crop"}, ValueError, "data.resize_mode must be one of shorter_side, squash"),
        ({"max_val_images": 0}, ValueError, "data.max_val_images"),
        ({"num_workers": -1}, ValueError, "data.num_workers must be an integer >= 0"),
        ({"seed": -1}, ValueError, "data.seed"),
        ({"source": "folder"}, ValueError, "data.root is required"),
        (
            {"source": "folder", "root": "/no/such/dir"},
            FileNotFoundError,
            "data.root /no/such/dir is not a directory",
        ),
    ],
)
def test_bad_values_name_their_key(override: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as raised:
        validate_data_config(replace(DataConfig(), **override))
    assert "\n" not in str(raised.value)
    with pytest.raises(error):
        build_datamodule(replace(DataConfig(), **override))


# ---------------------------------------------------------------- data module


def test_classes_are_available_after_setup_only() -> None:
    module = build_datamodule(SYNTHETIC)
    with pytest.raises(RuntimeError, match="after setup"):
        _ = module.num_classes
    with pytest.raises(RuntimeError, match="setup"):
        module.train_dataloader()
    module.setup("fit")
    assert module.num_classes == 4 and len(module.classes) == 4


def test_embedded_default_batches() -> None:
    module = build_datamodule(
        DataConfig(crop_size=CROP, crops_per_epoch=2, val_crops=3, batch_size=5, num_workers=0)
    )
    module.setup("fit")
    assert module.num_classes >= 6
    train = next(iter(module.train_dataloader()))
    assert train["rgb"].shape == (5, 3, CROP, CROP) and train["rgb"].dtype == torch.uint8
    assert train["label"].dtype == torch.int64 and int(train["label"].max()) < module.num_classes
    val_batches = list(module.val_dataloader())
    val_labels = torch.cat([batch["label"] for batch in val_batches])
    assert val_labels.tolist() == [i // 3 for i in range(3 * module.num_classes)]
    module.set_epoch(3)
    again = torch.cat([batch["rgb"] for batch in module.val_dataloader()])
    assert torch.equal(again, torch.cat([batch["rgb"] for batch in val_batches]))


def test_folder_source_with_workers_and_an_evenly_spaced_validation_subset(tmp_path: Path) -> None:
    for split, count in (("train", 6), ("val", 10)):
        for index in range(count):
            folder = tmp_path / split / ("cat" if index % 2 else "dog")
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (30, 30), (index * 20, 100, 50)).save(folder / f"{index}.png")
    cfg = DataConfig(
        source="folder", root=str(tmp_path), crop_size=CROP, batch_size=2, num_workers=2, max_val_images=4
    )
    module = build_datamodule(cfg)
    module.setup("fit")
    assert module.classes == ["cat", "dog"]
    train_batches = list(module.train_dataloader())
    assert len(train_batches) == 3 and all(
        batch["rgb"].shape == (2, 3, CROP, CROP) for batch in train_batches
    )
    val_rgb = torch.cat([batch["rgb"] for batch in module.val_dataloader()])
    # val lists cat (1,3,5,7,9) then dog (0,2,4,6,8); positions 0, 3, 6, 9 of that list are kept.
    assert val_rgb[:, 0, 0, 0].tolist() == [20, 140, 40, 160]


def test_folder_splits_with_different_classes_are_refused(tmp_path: Path) -> None:
    for split, label in (("train", "cat"), ("val", "cow")):
        (tmp_path / split / label).mkdir(parents=True)
        Image.new("RGB", (30, 30)).save(tmp_path / split / label / "a.png")
    module = build_datamodule(DataConfig(source="folder", root=str(tmp_path), num_workers=0))
    with pytest.raises(ValueError, match="class folders differ"):
        module.setup("fit")


def test_evenly_spaced_indices() -> None:
    assert evenly_spaced_indices(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced_indices(3, 5) == [0, 1, 2]


def test_new_epoch_reaches_persistent_workers() -> None:
    cfg = replace(SYNTHETIC, num_workers=2, persistent_workers=True)
    module = build_datamodule(cfg)
    module.setup("fit")
    loader = module.train_dataloader()
    for epoch in (0, 1, 2):
        loader.sampler.set_epoch(epoch)  # what Lightning does before every epoch
        delivered = torch.cat([batch["rgb"] for batch in loader])
        order = shuffled_order(cfg.seed, epoch, cfg.synthetic_train_images)
        assert torch.equal(delivered, epoch_crops(cfg, epoch, order))


def test_ddp_ranks_get_disjoint_indices_and_the_epoch() -> None:
    dataset = SyntheticColorDataset(20, 40, CROP, split="train", seed=0)
    per_rank = []
    for rank in range(2):
        sampler = DistributedSamplerWrapper(
            SeededShuffleSampler(dataset, seed=0), num_replicas=2, rank=rank, seed=0
        )
        sampler.set_epoch(5)
        per_rank.append(list(sampler))
    assert set(per_rank[0]).isdisjoint(per_rank[1]) and sorted(per_rank[0] + per_rank[1]) == list(range(20))
    reference = SyntheticColorDataset(20, 40, CROP, split="train", seed=0)
    reference.set_epoch(5)
    assert torch.equal(dataset[3][0], reference[3][0])


class RecordingModule(LightningModule):
    """Keeps every training batch it is given; its one parameter only exists so the optimiser has work."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, torch.Tensor]] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        self.seen.append((self.current_epoch, batch["rgb"].clone()))
        return self.scale * batch["rgb"].float().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit_and_record(cfg: DataConfig, epochs: int) -> list[tuple[int, torch.Tensor]]:
    model = RecordingModule()
    trainer = bare_trainer(devices=1, max_epochs=epochs, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, datamodule=ColorizationDataModule(cfg))
    return model.seen


def test_lightning_fit_gets_reproducible_crops_that_change_every_epoch() -> None:
    cfg = replace(SYNTHETIC, num_workers=2, persistent_workers=True)
    seen = fit_and_record(cfg, epochs=2)
    assert [epoch for epoch, _ in seen] == [0, 0, 1, 1]
    for epoch in (0, 1):
        order = shuffled_order(cfg.seed, epoch, cfg.synthetic_train_images)
        delivered = torch.cat([rgb for seen_epoch, rgb in seen if seen_epoch == epoch])
        assert torch.equal(delivered, epoch_crops(cfg, epoch, order[: 2 * cfg.batch_size]))


class SavingModule(RecordingModule):
    """Under ddp_spawn the ranks are other processes: each writes what it saw to `out_dir`."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir

    def on_train_end(self) -> None:
        torch.save(self.seen, Path(self.out_dir) / f"rank{self.global_rank}.pt")


@pytest.mark.slow
def test_ddp_ranks_see_disjoint_crops_covering_each_epoch(tmp_path: Path) -> None:
    cfg = replace(SYNTHETIC, num_workers=1, persistent_workers=True)
    trainer = bare_trainer(devices=2, strategy="ddp_spawn", max_epochs=2, limit_val_batches=0)
    trainer.fit(SavingModule(str(tmp_path)), datamodule=ColorizationDataModule(cfg))
    seen = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    everything = range(cfg.synthetic_train_images)
    for epoch in (0, 1):
        expected = {crop.numpy().tobytes() for crop in epoch_crops(cfg, epoch, list(everything))}
        per_rank = [
            {crop.numpy().tobytes() for e, rgb in rank if e == epoch for crop in rgb} for rank in seen
        ]
        assert per_rank[0].isdisjoint(per_rank[1]) and per_rank[0] | per_rank[1] == expected


def test_resumed_fit_continues_with_the_crops_of_the_restored_epoch(tmp_path: Path) -> None:
    cfg = replace(SYNTHETIC, num_workers=2, persistent_workers=True)
    common = {
        "devices": 1,
        "limit_train_batches": 2,
        "limit_val_batches": 0,
        "default_root_dir": str(tmp_path),
    }
    bare_trainer(max_epochs=1, enable_checkpointing=True, **common).fit(
        RecordingModule(), datamodule=ColorizationDataModule(cfg)
    )
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.ckpt")
    resumed = RecordingModule()
    bare_trainer(max_epochs=2, **common).fit(
        resumed, datamodule=ColorizationDataModule(cfg), ckpt_path=checkpoint
    )
    assert [epoch for epoch, _ in resumed.seen] == [1, 1]
    order = shuffled_order(cfg.seed, 1, cfg.synthetic_train_images)
    delivered = torch.cat([rgb for _, rgb in resumed.seen])
    assert torch.equal(delivered, epoch_crops(cfg, 1, order[: 2 * cfg.batch_size]))
