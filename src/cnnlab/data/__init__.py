"""Datasets: the catalogue, where the files are, reading them, and batching on the device.

    from cnnlab.data import load_dataset, DeviceBatches, InputAdapter, Normalization
    data = load_dataset("fashion-mnist")             # resolved: data_dir, cache, system, download
    batches = DeviceBatches(data.train_images, data.train_labels, batch_size=128, device="cuda",
                            normalization=Normalization(*data.mean_std()),
                            adapter=InputAdapter(data.image_shape, (1, 32, 32)))
    for inputs, labels in batches.epoch(0): ...

The downloader is ``cnnlab.data.download.download`` (not re-exported here, so that
``cnnlab.data.download`` keeps naming the module).
"""

from typing import TYPE_CHECKING

from cnnlab.runtime.lazy import lazy_exports

if TYPE_CHECKING:
    from cnnlab.data.catalog import (
        CATALOG,
        DataFile,
        DataFormat,
        DatasetEntry,
        get_entry,
        list_datasets,
    )
    from cnnlab.data.dataset import Dataset, load_dataset, verify_file
    from cnnlab.data.device import (
        Augmentation,
        DeviceBatches,
        InputAdapter,
        Normalization,
        augment,
        preprocess,
    )
    from cnnlab.data.grid import save_sample_grid
    from cnnlab.data.resolve import (
        DatasetLocation,
        ResolvedDataset,
        cache_dir,
        cnnlab_home,
        fetch_dataset,
        locate_datasets,
        resolve_dataset,
    )

# Imported on first use: `import cnnlab.quest.server` (a leaderboard worker) never needs torch.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CATALOG": "cnnlab.data.catalog",
        "DataFile": "cnnlab.data.catalog",
        "DataFormat": "cnnlab.data.catalog",
        "DatasetEntry": "cnnlab.data.catalog",
        "get_entry": "cnnlab.data.catalog",
        "list_datasets": "cnnlab.data.catalog",
        "Dataset": "cnnlab.data.dataset",
        "load_dataset": "cnnlab.data.dataset",
        "verify_file": "cnnlab.data.dataset",
        "Augmentation": "cnnlab.data.device",
        "DeviceBatches": "cnnlab.data.device",
        "InputAdapter": "cnnlab.data.device",
        "Normalization": "cnnlab.data.device",
        "augment": "cnnlab.data.device",
        "preprocess": "cnnlab.data.device",
        "save_sample_grid": "cnnlab.data.grid",
        "DatasetLocation": "cnnlab.data.resolve",
        "ResolvedDataset": "cnnlab.data.resolve",
        "cache_dir": "cnnlab.data.resolve",
        "cnnlab_home": "cnnlab.data.resolve",
        "fetch_dataset": "cnnlab.data.resolve",
        "locate_datasets": "cnnlab.data.resolve",
        "resolve_dataset": "cnnlab.data.resolve",
    },
)

__all__ = [
    "CATALOG",
    "Augmentation",
    "DataFile",
    "DataFormat",
    "Dataset",
    "DatasetEntry",
    "DatasetLocation",
    "DeviceBatches",
    "InputAdapter",
    "Normalization",
    "ResolvedDataset",
    "augment",
    "cache_dir",
    "cnnlab_home",
    "fetch_dataset",
    "get_entry",
    "list_datasets",
    "load_dataset",
    "locate_datasets",
    "preprocess",
    "resolve_dataset",
    "save_sample_grid",
    "verify_file",
]
