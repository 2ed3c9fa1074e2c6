"""profiles: what the hardware costs.

Device profiles as data (A11-A17 Pro, M1-M4, plus a measured ``host``), ``estimate(model, input_shape,
device)`` -> ``Cost`` for any torch CNN built from standard layers, measurement and calibration.
Imports nothing of ``compress``, ``search`` or ``reports``; holds the toolkit's error classes, the one
root every room raises from, and the one parser of quantization scheme names.
"""

from __future__ import annotations

from profiles._calibrate import CalibrationResult, calibrate, load_measurements
from profiles._cost import Cost, disk_mb, estimate, estimate_graph, weights_mb
from profiles._describe import describe_profile, summary_row
from profiles._errors import CompressError, ConfigError, DataError, DataWarning, ProfileError, RunError
from profiles._graph import Graph, extract_graph
from profiles._host import measure_host
from profiles._measure import measure_coreml, measure_latencies, measure_latency
from profiles._quant import PALETTE_BITS, SCHEMES, WEIGHT_THRESHOLD, QuantScheme, parse_quant
from profiles._refresh import refresh_host
from profiles._registry import DEVICES, host_profile_path, list_profiles, load_profile
from profiles._schema import OP_CLASSES, ComputeUnit, DeviceProfile, Sourced, UnitCosts, dump_profile
from profiles._trace import Node

__all__ = [
    "DEVICES",
    "OP_CLASSES",
    "PALETTE_BITS",
    "SCHEMES",
    "WEIGHT_THRESHOLD",
    "CalibrationResult",
    "CompressError",
    "ComputeUnit",
    "ConfigError",
    "Cost",
    "DataError",
    "DataWarning",
    "DeviceProfile",
    "Graph",
    "Node",
    "ProfileError",
    "QuantScheme",
    "RunError",
    "Sourced",
    "UnitCosts",
    "calibrate",
    "describe_profile",
    "disk_mb",
    "dump_profile",
    "estimate",
    "estimate_graph",
    "extract_graph",
    "host_profile_path",
    "list_profiles",
    "load_measurements",
    "load_profile",
    "measure_coreml",
    "measure_host",
    "measure_latencies",
    "measure_latency",
    "parse_quant",
    "refresh_host",
    "summary_row",
    "weights_mb",
]
