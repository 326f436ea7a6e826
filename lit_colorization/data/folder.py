"""An ImageNet-style folder of images: `root/<split>/...`, with or without class sub-folders.

With class sub-folders (any non-hidden sub-folder of the split that contains images, searched
recursively), labels are the sorted class indices, as in torchvision's ImageFolder. Without them, every
image has label 0 and the single class is called `FLAT_CLASS_NAME`. A split with both top-level images and
class sub-folders is refused, since the top-level images would have no class.
Listing is ``data/listing.py``'s; ``data/file_index.py`` keeps the listing between starts.
"""

from __future__ import annotations

import os

from torch.utils.data import Dataset

from lit_colorization.data.collate import Sample
from lit_colorization.data.crops import Resize, crop_sample, sample_rng
from lit_colorization.data.file_index import load_split
from lit_colorization.data.images import read_rgb
from lit_colorization.data.listing import resolve_split_dir
from lit_colorization.data.sampling import SharedEpoch


class SplitFilesDataset(Dataset):
    """The image files of `root/split_dir` with their labels, and the epoch that seeds each file's crop draw.

    The base of the CPU-decoding `ImageFolderDataset` and the device-decoding `EncodedImageFolderDataset`,
    which list a split the same way and differ only in what an item is. ``index_cache``: where the listing is
    kept between starts (``data.index_cache``, see `data/file_index.py`); None lists the split every time.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split_dir: str,
        train: bool = True,
        seed: int = 0,
        strict: bool = False,
        index_cache: str | None = None,
    ) -> None:
        self.split_path = resolve_split_dir(root, split_dir)
        listing = load_split(self.split_path, index_cache)
        self.classes, self._relative_paths, self.labels = listing.classes, listing.paths, listing.labels
        self.train = train
        self.seed = seed
        self.strict = strict
        self._epoch = SharedEpoch()

    def __len__(self) -> int:
        return len(self._relative_paths)

    def path(self, index: int) -> str:
        return os.path.join(self.split_path, os.fsdecode(self._relative_paths[index]))

    def set_epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)


class ImageFolderDataset(SplitFilesDataset):
    """Crops of the images under `root/split_dir`; random crops and flips when `train`, else centre crops.

    An unreadable file gives None (see `SkipUnreadableCollate`), or raises when `strict`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split_dir: str,
        crop_size: int,
        resize: Resize | None = None,
        train: bool = True,
        seed: int = 0,
        strict: bool = False,
        index_cache: str | None = None,
    ) -> None:
        super().__init__(root, split_dir, train=train, seed=seed, strict=strict, index_cache=index_cache)
        self.crop_size = crop_size
        self.resize = resize

    def __getitem__(self, index: int) -> Sample | None:
        image = read_rgb(self.path(index), strict=self.strict)
        if image is None:
            return None
        rng = sample_rng(self.seed, self._epoch.value, index) if self.train else None
        return crop_sample(image, self.crop_size, self.resize, rng), int(self.labels[index])
