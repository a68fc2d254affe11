"""The trainer client, as the service and DESIGN's `from scoring.client import ...` see it.

The code lives once, in the light distribution client/reviewapp_client (`pip install ./client` in a trainer,
no Django). `make` installs it into the service's venv; a checkout whose venv predates it reads it from the
folder beside this package.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import reviewapp_client  # noqa: F401 - installed (pip install -e ./client)
except ModuleNotFoundError:
    sys.path.append(str(Path(__file__).resolve().parent.parent / "client"))

from reviewapp_client.client import *  # noqa: F403 - this module is that package's public face
from reviewapp_client.client import __all__ as _client_all
from reviewapp_client.semantics import UNSCORED, reward_for

__all__ = [*_client_all, "UNSCORED", "reward_for"]
