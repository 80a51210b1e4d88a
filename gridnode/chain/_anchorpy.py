"""The parts of anchorpy that gridnode.chain.idl uses (the borsh coders), imported without pytest.

anchorpy's package ``__init__`` imports its pytest plugin whenever pytest is importable, so on a
machine that has pytest (a development install, or a production venv that happens to hold it)
merely importing ``anchorpy.coder`` would load pytest into the daemon: about 110 modules and
6.5 MB of memory for nothing. The plugin module is blocked while anchorpy initialises (anchorpy
tolerates its absence: it imports it under ``suppress(ImportError)``) and unblocked afterwards,
so a test session that wants the plugin can still import it.
"""

from __future__ import annotations

import importlib
import sys


def _import_anchorpy_without_its_pytest_plugin() -> None:
    plugin = "anchorpy.pytest_plugin"
    if "anchorpy" in sys.modules or plugin in sys.modules:
        return
    sys.modules[plugin] = None  # type: ignore[assignment]  # "import of ... halted"
    try:
        importlib.import_module("anchorpy")
    finally:
        if sys.modules.get(plugin, ...) is None:
            del sys.modules[plugin]


_import_anchorpy_without_its_pytest_plugin()

from anchorpy.coder.coder import Coder  # noqa: E402
from anchorpy.coder.idl import _type_layout as type_layout  # noqa: E402
from anchorpy_core.idl import Idl, IdlField  # noqa: E402

__all__ = ["Coder", "Idl", "IdlField", "type_layout"]
