"""Other processes on the same CPUs: measured, so that a timing can say it was disturbed.

A CPU timing taken while other processes run is slower and noisier; on this project's 2-core
machines two threads next to one busy process ran 2 to 12 times slower. ``CpuCounters`` reads
the whole machine's and this process's CPU time (Linux /proc/stat); ``others_cpu_share`` turns
two readings into the share others used (``steal_cpu_share``: the part a virtual machine's
hypervisor gave to other machines), and ``busy_note`` into a warning when it is high.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuCounters:
    """CPU time of the whole machine (/proc/stat, all CPUs) and of this process, in seconds."""

    busy: float  # user, nice, system, irq, softirq and steal (time the hypervisor took)
    total: float  # the same plus idle and iowait
    own: float  # this process, all its threads
    steal: float = 0.0  # of busy: time the hypervisor gave other virtual machines

    @classmethod
    def read(cls) -> CpuCounters | None:
        """Now; None where /proc/stat cannot be read (not Linux)."""
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[1:9])
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = user + nice + system + irq + softirq + steal
        return cls(busy / tick, (busy + idle + iowait) / tick, time.process_time(), steal / tick)


def others_cpu_share(start: CpuCounters | None, end: CpuCounters | None) -> float | None:
    """The share of all CPUs' time between two readings that other processes (or the hypervisor)
    used: high means this machine's CPU timings are slower and noisier than on an idle one."""
    if start is None or end is None:
        return None
    return _share(start, end, (end.busy - start.busy) - (end.own - start.own))


def steal_cpu_share(start: CpuCounters | None, end: CpuCounters | None) -> float | None:
    """The share of all CPUs' time between two readings that the hypervisor gave to other
    virtual machines (steal time, part of ``others_cpu_share``): a host busy outside this VM."""
    if start is None or end is None:
        return None
    return _share(start, end, end.steal - start.steal)


def _share(start: CpuCounters, end: CpuCounters, seconds: float) -> float | None:
    """``seconds`` of CPU time as a share (0..1) of all CPUs' time between two readings."""
    if end.total <= start.total:
        return None
    return min(1.0, max(0.0, seconds / (end.total - start.total)))


BUSY_SHARE = 0.1  # others' share of the CPUs above which a result warns that the CPU was shared
STEAL_SHARE = 0.005  # the hypervisor's share of the CPUs from which a warning names it


def steal_note(steal: float | None) -> str:
    """`` (N% of it steal time: ...)`` where the hypervisor took at least ``STEAL_SHARE`` of the
    CPUs (``steal_cpu_share``), else ``""``: what a shared-CPU message adds about the host."""
    if steal is None or steal < STEAL_SHARE:
        return ""
    return f" ({steal:.0%} of it steal time: the hypervisor ran other virtual machines on them)"


def busy_note(share: float | None, steal: float | None = None) -> str | None:
    """A warning when other processes used more than ``BUSY_SHARE`` of the CPUs, else None;
    ``steal`` (``steal_cpu_share``) says how much of that the hypervisor took."""
    if share is None or share <= BUSY_SHARE:
        return None
    return (
        f"the CPUs were shared: other processes used {share:.0%} of their time during the "
        f"measurement{steal_note(steal)}, so the CPU timings are slower and noisier than on an "
        "idle machine"
    )
