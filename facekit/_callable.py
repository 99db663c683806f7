"""Modules that can be called like their namesake function (``facekit.embed``, ``facekit.verify``).

``facekit.embed`` is both a function (the flat API: ``fk.embed(crops)``) and a module
(``from facekit.embed import Embedder``). Importing a submodule makes Python set the package
attribute to the module, which would otherwise replace the function and break ``fk.embed(crops)``
after any ``from facekit.embed import ...``. Making the module callable keeps both spellings
working whatever was imported first.
"""

from __future__ import annotations

import sys
import types


def make_module_callable(module_name: str, function_name: str) -> None:
    """Calling module ``module_name`` calls its function ``function_name`` (same arguments)."""
    module = sys.modules[module_name]

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(self, function_name)(*args, **kwargs)

    CallableModule.__call__.__doc__ = f"Same as ``{module_name}.{function_name}``."
    module.__class__ = CallableModule
