"""Shared test set-up: the repo root on sys.path, and the shared data folder."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# --- shared data (read-only, next to the repo: ../shared/data) ---
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts):
    """Path inside the shared data folder. If it is absent the test fails under CI (``$CI`` set:
    a silently skipped test proves nothing there) and is skipped on a developer's machine."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found: {path} (required when CI is set)", pytrace=False)
        pytest.skip(f"shared data not found: {path}")
    return path
