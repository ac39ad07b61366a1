"""Hardware: the machine report, the device catalogue (mu and eta), ceilings, crossover, energy.

One import line per public name, so that each module adds its own lines.
"""

from cnnlab.bench.catalog import DeviceSpec as DeviceSpec
from cnnlab.bench.catalog import effectiveness as effectiveness
from cnnlab.bench.catalog import load_catalog as load_catalog
from cnnlab.bench.catalog import match_device as match_device
from cnnlab.bench.catalog import plot_catalog as plot_catalog
from cnnlab.bench.ceilings import Ceilings as Ceilings
from cnnlab.bench.ceilings import MatmulRate as MatmulRate
from cnnlab.bench.ceilings import ceiling_for as ceiling_for
from cnnlab.bench.ceilings import measure_ceilings as measure_ceilings
from cnnlab.bench.crossover import CrossoverConfig as CrossoverConfig
from cnnlab.bench.crossover import run_crossover as run_crossover
from cnnlab.bench.crossover_plot import plot_crossover as plot_crossover
from cnnlab.bench.crossover_result import CrossoverResult as CrossoverResult
from cnnlab.bench.energy import EnergyMeter as EnergyMeter
from cnnlab.bench.machine import CpuInfo as CpuInfo
from cnnlab.bench.machine import GpuInfo as GpuInfo
from cnnlab.bench.machine import MachineReport as MachineReport
from cnnlab.bench.machine import TorchBuild as TorchBuild
from cnnlab.bench.machine import machine_report as machine_report
from cnnlab.bench.machine import parse_cpuinfo as parse_cpuinfo
from cnnlab.bench.run import bench_run as bench_run
