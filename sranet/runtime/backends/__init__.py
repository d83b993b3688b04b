"""Backends behind one interface, chosen by artifact suffix (see ``base.py``). Importing this imports no runtime."""

from sranet.runtime.backends.base import BACKENDS, Backend, backend_class, open_backend

__all__ = ["BACKENDS", "Backend", "backend_class", "open_backend"]
