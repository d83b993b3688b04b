"""SRANet toolkit: train, export and run the structure-regularised attentive network for AVNFH on CT.

This module stays light: it never imports torch, onnxruntime or tensorrt. Import the part you need:
``sranet.model`` (torch), ``sranet.runtime`` (torch-free inference), ``sranet.export`` (torch, onnx).
"""

import os

from sranet.errors import SranetError

# ONNX Runtime's telemetry writes model file names, paths and errors to a database under the user's home directory
# as soon as onnxruntime is imported; with patients' data nothing may be written outside the folders the user named.
# Set here, before any sranet module can import onnxruntime; an explicit setting of the user's is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"

__all__ = ["SranetError", "__version__"]
