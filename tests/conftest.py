"""Shared test set-up: the repo root on sys.path, and the shared data folder."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# --- shared data (read-only, next to the repo: ../shared/data) ---
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts):
    """Path inside the shared data folder; skips the test if it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path
