"""Shared test setup."""

import os
import tempfile
from pathlib import Path

# numba picks its cache folder when ranx is imported (its functions are decorated with cache=True), so this must be
# set before any test module is collected; a fixture would run too late. The folder outlives the session so that
# ranx's ~60 s JIT compilation happens once per machine, not once per test run.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "lit_ir-numba-cache"))
