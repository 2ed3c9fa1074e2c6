"""compress: the model side of the toolkit, and the CLI entry point.

Rooms inside: ``compress.data`` (built-in scene generator and COCO loader), ``compress.model`` (ArchSpec,
MobileNetV3 blocks, task heads, the elastic supernet and ``extract``), training, ``compress.evaluate``
(per-task quality and one aggregate), compression (pruning, quantization), export (Core ML, ONNX) and the CLI.
Heavy parts are imported lazily.
"""

from __future__ import annotations

from compress.errors import CompressError, ConfigError, DataError, RunError

__all__ = ["CompressError", "ConfigError", "DataError", "RunError", "__version__"]

__version__ = "0.1.0"
