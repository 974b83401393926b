"""The shipped DDXPlus pack is exactly what the build script produces from the shared data."""

from __future__ import annotations

from pathlib import Path

from conftest import SHARED, needs_shared

import diagnostician.knowledge.schema as schema
from diagnostician.knowledge.build_ddxplus import PACK_FILES, write


@needs_shared
def test_shipped_pack_equals_build(tmp_path: Path) -> None:
    write(SHARED, tmp_path)
    shipped = schema.PACKS_DIR / "ddxplus"
    for name in PACK_FILES:
        assert (tmp_path / name).read_text(encoding="utf-8") == (shipped / name).read_text(encoding="utf-8"), name


def test_shipped_pack_is_smoothed_and_traceable(pack) -> None:
    assert len(pack.conditions) == 49 and len(pack.findings) == 223
    assert ((pack.p > 0) & (pack.p < 1)).all()
    legend = pack.meta["provenance"]["likelihood_sources"]
    assert {str(s) for s in set(pack.p_source.ravel().tolist())} <= set(legend)
    assert all(c.source for c in pack.conditions)
    assert all(r.basis for r in pack.red_flags)
