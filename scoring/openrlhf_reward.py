"""OpenRLHF reward function file for a checkout: `--reward.remote_url /path/to/reviewapp/scoring/openrlhf_reward.py`.

The code is reviewapp_client.openrlhf (client/); with the light client installed, point --reward.remote_url at
that module's file instead. OpenRLHF loads this file standalone, so it only re-exports.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import reviewapp_client  # noqa: F401
except ModuleNotFoundError:  # loaded by path from a checkout without the client installed
    sys.path.append(str(Path(__file__).resolve().parent.parent / "client"))

from reviewapp_client.openrlhf import response_of, reward_func

__all__ = ["response_of", "reward_func"]
