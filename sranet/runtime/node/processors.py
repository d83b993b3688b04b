"""Finding the processor a node runs: ``module:function`` names a callable ``folder -> StudyResult``."""

from __future__ import annotations

import importlib

from sranet.errors import InputError


def load_processor(spec: str):
    """Import ``module:function`` (e.g. ``mypackage.avnfh:process``) and return the callable.

    The function gets the folder of one study round's received instances (``*.dcm``) and returns a
    ``sranet.runtime.node.StudyResult(datasets, summary)``.
    """
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"processor {spec!r} is not 'module:function'.",
                         hint="For example --processor mypackage.avnfh:process.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"processor module {module_name!r} cannot be imported: {exc}.",
                         hint="Check the name, and that its folder is on PYTHONPATH.") from exc
    func = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise InputError(f"module {module_name!r} has no {attr!r}.", hint="Check the function's name.")
    if not callable(func):
        raise InputError(f"processor {spec!r} is not callable.")
    return func
