"""The lowest layer, shared by every other package: devices, threads, the software context,
atomic files and JSON, figures and the version. It imports nothing else of cnnlab."""

from typing import TYPE_CHECKING

from cnnlab.runtime.lazy import lazy_exports
from cnnlab.runtime.version import __version__

if TYPE_CHECKING:
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

# Imported on first use: `import cnnlab.quest.server` (a leaderboard worker) never needs torch.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "git_commit": "cnnlab.runtime.context",
        "software_context": "cnnlab.runtime.context",
        "AUTOCAST_DTYPES": "cnnlab.runtime.devices",
        "cpu_name": "cnnlab.runtime.devices",
        "device_name": "cnnlab.runtime.devices",
        "resolve_device": "cnnlab.runtime.devices",
        "synchronize": "cnnlab.runtime.devices",
        "new_figure": "cnnlab.runtime.figures",
        "png_path": "cnnlab.runtime.figures",
        "save_png": "cnnlab.runtime.figures",
        "append_jsonl": "cnnlab.runtime.files",
        "atomic_write": "cnnlab.runtime.files",
        "default_output_dir": "cnnlab.runtime.files",
        "write_json": "cnnlab.runtime.files",
        "write_jsonl": "cnnlab.runtime.files",
        "torch_threads": "cnnlab.runtime.threads",
    },
)

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
