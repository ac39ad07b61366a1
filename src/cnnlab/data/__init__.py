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
