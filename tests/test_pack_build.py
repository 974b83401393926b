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
    assert len(pack.conditions) == 49 and int(pack.history_mask.sum()) == 223  # + examination/test results of known accuracy
    assert ((pack.p > 0) & (pack.p < 1)).all()
    legend = pack.meta["provenance"]["likelihood_sources"]
    assert {str(s) for s in set(pack.p_source.ravel().tolist())} <= set(legend)
    assert all(c.source for c in pack.conditions)
    assert all(r.basis for r in pack.red_flags)


@needs_shared
def test_shipped_differential_model_equals_training(tmp_path: Path) -> None:
    """Retraining from the dev file reproduces the shipped model and its fold models (to rounding)."""
    import json

    import numpy as np

    from conftest import EN_DEV
    from diagnostician.bench.train_differential import FOLDS, train

    shipped = schema.PACKS_DIR / "ddxplus"
    model, folds = train(shipped, EN_DEV)
    ship_model = json.loads((shipped / "differential_model.json").read_text(encoding="utf-8"))
    ship_folds = json.loads((shipped / "differential_folds.json").read_text(encoding="utf-8"))
    assert model["threshold"] == ship_model["threshold"] and folds["folds"] == ship_folds["folds"] == FOLDS

    def flat(conditions: dict) -> np.ndarray:
        return np.concatenate([np.r_[v["intercept"], v["w_evidence"], v["w_features"]] for v in conditions.values()])

    np.testing.assert_allclose(flat(model["conditions"]), flat(ship_model["conditions"]), atol=1e-4)
    for mine, theirs in zip(folds["models"], ship_folds["models"]):
        np.testing.assert_allclose(flat(mine), flat(theirs), atol=1e-4)
