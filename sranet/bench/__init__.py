"""Benchmarking: latency statistics, environment capture, interleaved runs, FLOPs and reports.

Torch-free at import time; only running a PyTorch artifact (or counting FLOPs from the module) imports torch.
"""
