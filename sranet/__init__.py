"""SRANet toolkit: train, export and run the structure-regularised attentive network for AVNFH on CT.

This module stays light: it never imports torch, onnxruntime or tensorrt. Import the part you need:
``sranet.model`` (torch), ``sranet.runtime`` (torch-free inference), ``sranet.export`` (torch, onnx).
"""

from sranet.errors import SranetError

__version__ = "0.1.0"

__all__ = ["SranetError", "__version__"]
