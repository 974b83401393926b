"""Shared fixtures: the shipped pack, the shared data folder (tests that need it skip without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EN_DEV = SHARED / "ddxplus" / "patients_test_en_dev.csv"
FR_TEST = SHARED / "ddxplus-fr" / "patients_test_19.csv"

needs_shared = pytest.mark.skipif(
    not EN_DEV.exists(), reason="../shared/data (DDXPlus files) is absent: this clone is outside the workspace"
)


@pytest.fixture(scope="session")
def pack():
    """The shipped DDXPlus pack."""
    from diagnostician.knowledge.schema import load_pack

    return load_pack("ddxplus")
