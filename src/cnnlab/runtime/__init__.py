"""The lowest layer, shared by every other package: devices, threads, the software context,
atomic files and JSON, figures and the version. It imports nothing else of cnnlab."""

from cnnlab.runtime.context import git_commit, software_context
from cnnlab.runtime.devices import (
    AUTOCAST_DTYPES,
    cpu_name,
    device_name,
    resolve_device,
    synchronize,
)
from cnnlab.runtime.figures import new_figure, png_path, save_png
from cnnlab.runtime.files import (
    append_jsonl,
    atomic_write,
    default_output_dir,
    write_json,
    write_jsonl,
)
from cnnlab.runtime.threads import torch_threads
from cnnlab.runtime.version import __version__

__all__ = [
    "AUTOCAST_DTYPES",
    "__version__",
    "append_jsonl",
    "atomic_write",
    "cpu_name",
    "default_output_dir",
    "device_name",
    "git_commit",
    "new_figure",
    "png_path",
    "resolve_device",
    "save_png",
    "software_context",
    "synchronize",
    "torch_threads",
    "write_json",
    "write_jsonl",
]
