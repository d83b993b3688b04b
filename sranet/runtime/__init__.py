"""Torch-free inference: volume I/O, preprocessing, backends, predictor. This is what gets embedded.

Nothing under ``sranet.runtime`` may import torch at module level (the PyTorch backends import it lazily, only
when a ``.pt`` artifact is opened). Heavy optional packages (onnxruntime, tensorrt, cupy) are imported by the
backend that needs them.
"""
