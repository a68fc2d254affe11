"""The light client installs and runs in a bare venv: `pip install ./client` pulls httpx and nothing of the
service (no Django, Celery or torch), and the OpenRLHF reward file works from that install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.trainers, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ONLY = ("django", "celery", "torch", "rest_framework", "scipy", "pylint")


def test_client_installs_in_a_bare_venv_without_the_service_dependencies(tmp_path):
    source = shutil.copytree(ROOT / "client", tmp_path / "client")  # the build leaves no files in the checkout
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, timeout=60
    ).stdout.lower()
    assert "reviewapp-client==" in installed and "httpx==" in installed
    assert not [name for name in SERVICE_ONLY if f"\n{name}==" in "\n" + installed]

    code = (
        "import sys, importlib.util\n"
        "from reviewapp_client import RewardClient, trl_reward_func, reward_for\n"
        "import reviewapp_client.openrlhf as o\n"
        "spec = importlib.util.spec_from_file_location('reward_func', o.__file__)\n"  # as OpenRLHF loads it
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert callable(module.reward_func) and reward_for('failed', None) is None\n"
        f"print(sorted(m for m in {SERVICE_ONLY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
