"""Bad input on the library API gives typed errors: demographics, answers, and malformed pack folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tinypack import make_tiny_pack, tiny_pack_data, write_pack_files, write_tiny_pack

from diagnostician.consult import Consultation
from diagnostician.dialogue.answers import as_answer, parse_answer
from diagnostician.engine.posterior import Answer, start, update
from diagnostician.errors import InputError, InvalidAnswerError, PackError, UnknownFindingError
from diagnostician.knowledge.schema import load_pack_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_pack(tmp_path_factory.mktemp("tiny"))


# ---- demographics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("age", [-1, 121, "abc", float("nan"), float("inf"), None, "", -0.5, 120.5])
def test_bad_age(tiny, age) -> None:
    with pytest.raises(InputError):
        start(tiny, age, "F")


@pytest.mark.parametrize("age", [-1, 121, "abc", float("nan")])
def test_bad_age_in_a_consultation(pack, age) -> None:
    with pytest.raises(InputError):
        Consultation.begin(age, "F", pack=pack)


@pytest.mark.parametrize("age", [0, 0.5, 120, "42"])
def test_good_age_edges(tiny, age) -> None:
    assert start(tiny, age, "F").age == float(age)


@pytest.mark.parametrize("sex", ["X", "", "unknown", None, 1])
def test_bad_sex(tiny, sex) -> None:
    with pytest.raises(InputError):
        start(tiny, 40, sex)


def test_bad_sex_in_a_consultation(pack) -> None:
    with pytest.raises(InputError):
        Consultation.begin(40, "X", pack=pack)


# ---- answers ---------------------------------------------------------------------------------------


def test_unknown_finding_code(tiny) -> None:
    s = start(tiny, 40, "F")
    with pytest.raises(UnknownFindingError):
        update(tiny, s, Answer("cough", True))
    with pytest.raises(UnknownFindingError):
        start(tiny, 40, "F", [Answer("cough", True)])
    with pytest.raises(UnknownFindingError):
        tiny.finding("cough")


def test_unknown_finding_code_in_a_consultation(pack) -> None:
    with pytest.raises(UnknownFindingError):
        Consultation.begin(40, "F", {"E_NOPE": True}, pack=pack)


@pytest.mark.parametrize(
    "code, value",
    [
        ("onset", "slowly"),  # categorical value not allowed
        ("onset", "chest"),  # a value of another finding
        ("onset", ("fast", "sudden")),  # two values for a one-value question
        ("onset", True),
        ("site", ("chest", "knee")),  # multi-choice with an unknown value
        ("site", ("knee",)),
        ("site", "knee"),
        ("site", True),
        ("site", 3),
        ("fever", "yes"),  # the engine takes booleans; text goes through the dialogue layer
        ("fever", 1),
        ("fever", ("chest",)),
    ],
)
def test_answer_that_does_not_fit_the_finding(tiny, code, value) -> None:
    s = start(tiny, 40, "F")
    with pytest.raises(InvalidAnswerError):
        update(tiny, s, Answer(code, value))
    with pytest.raises(InvalidAnswerError):
        start(tiny, 40, "F", [Answer(code, value)])


@pytest.mark.parametrize(
    "code, text",
    [("fever", "maybe"), ("fever", "2"), ("onset", "slowly"), ("onset", "4"), ("site", "chest, knee"), ("site", ",")],
)
def test_typed_answer_that_does_not_fit(tiny, code, text) -> None:
    with pytest.raises(InvalidAnswerError):
        parse_answer(tiny.finding(code), text)


@pytest.mark.parametrize(
    "code, text, value",
    [
        ("fever", "yes", True),
        ("fever", "no", False),
        ("fever", "?", None),
        ("onset", "suddenly", "sudden"),
        ("onset", "2", "fast"),  # menu number
        ("site", "throat, chest", ("chest", "throat")),
        ("site", "no", ("nowhere",)),
    ],
)
def test_typed_answer_that_fits(tiny, code, text, value) -> None:
    assert as_answer(tiny.finding(code), text) == Answer(code, value)


# ---- malformed pack folders ------------------------------------------------------------------------


def _mutated(tmp_path: Path, mutate) -> Path:
    meta, tables = tiny_pack_data()
    mutate(meta, tables)
    return write_pack_files(tmp_path / "pack", meta, tables)


def test_the_unmodified_tiny_pack_loads(tmp_path) -> None:
    pk = load_pack_dir(write_tiny_pack(tmp_path / "pack"))
    assert [c.code for c in pk.conditions] == ["CA", "CB", "CC"]
    assert [f.code for f in pk.findings] == ["fever", "pain", "onset", "site"]
    assert [r.id for r in pk.red_flags] == ["sudden_onset", "fever_with_pain"]


def test_missing_folder(tmp_path) -> None:
    with pytest.raises(PackError):
        load_pack_dir(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["pack.json", "likelihoods.json"])
def test_missing_file(tmp_path, name) -> None:
    folder = write_tiny_pack(tmp_path / "pack")
    (folder / name).unlink()
    with pytest.raises(PackError):
        load_pack_dir(folder)


@pytest.mark.parametrize("name", ["pack.json", "likelihoods.json"])
@pytest.mark.parametrize("text", ['{"format": "diagnostician-pack/1", ', "", "not json", b"\xff\xfe\x00garbage"])
def test_broken_json(tmp_path, name, text) -> None:
    folder = write_tiny_pack(tmp_path / "pack")
    if isinstance(text, bytes):
        (folder / name).write_bytes(text)
    else:
        (folder / name).write_text(text, encoding="utf-8")
    with pytest.raises(PackError):
        load_pack_dir(folder)


@pytest.mark.parametrize("name", ["pack.json", "likelihoods.json"])
@pytest.mark.parametrize("content", [[1, 2], "text", 3, None])
def test_json_of_the_wrong_type(tmp_path, name, content) -> None:
    folder = write_tiny_pack(tmp_path / "pack")
    (folder / name).write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(PackError):
        load_pack_dir(folder)


def _set(obj, key, value):
    obj[key] = value


MALFORMED = {
    # top-level shape
    "pack.json without format": lambda m, t: m.pop("format"),
    "wrong format": lambda m, t: _set(m, "format", "diagnostician-pack/0"),
    "no findings": lambda m, t: m.pop("findings"),
    "findings not a list of objects": lambda m, t: _set(m, "findings", "fever"),
    "finding without kind": lambda m, t: m["findings"][0].pop("kind"),
    "finding of unknown kind": lambda m, t: _set(m["findings"][0], "kind", "scale"),
    "finding with unknown parent": lambda m, t: _set(m["findings"][3], "parent", "headache"),
    "condition without prior": lambda m, t: m["conditions"][0].pop("prior"),
    "severity not a number": lambda m, t: _set(m["conditions"][0], "severity", "high"),
    "unknown triage level": lambda m, t: _set(m["conditions"][1], "triage", "soon"),
    "red flag on unknown finding": lambda m, t: _set(m["red_flags"][1]["when"][1], "finding", "headache"),
    "red flag of unknown level": lambda m, t: _set(m["red_flags"][0], "level", "asap"),
    "red flag without when": lambda m, t: m["red_flags"][0].pop("when"),
    # likelihood tables
    "no p": lambda m, t: t.pop("p"),
    "p missing a row": lambda m, t: t["p"].pop(),
    "p rows one column short": lambda m, t: [row.pop() for row in t["p"]],
    "p ragged": lambda m, t: t["p"][1].pop(),
    "p not numbers": lambda m, t: _set(t["p"][0], 0, "high"),
    "source wrong shape": lambda m, t: t["source"].pop(),
    "column of unknown finding": lambda m, t: _set(t["columns"], 0, ["headache", None]),
    "probability 0": lambda m, t: _set(t["p"][1], 3, 0.0),
    "probability 1": lambda m, t: _set(t["p"][2], 0, 1.0),
    "probability negative": lambda m, t: _set(t["p"][0], 5, -0.1),
    "probability above 1": lambda m, t: _set(t["p"][0], 6, 1.5),
    "age table wrong shape": lambda m, t: [row.pop() for row in t["age"]["p"]],
    "age bands missing": lambda m, t: t["age"].pop("bands"),
    "sex table wrong shape": lambda m, t: t["sex"]["p"].pop(),
    "sex table one column": lambda m, t: [row.pop() for row in t["sex"]["p"]],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_pack(tmp_path, case) -> None:
    folder = _mutated(tmp_path, MALFORMED[case])
    with pytest.raises(PackError):
        load_pack_dir(folder)


# Inconsistencies the loader should catch too, rather than let them surface later as KeyError or
# as a crash in the middle of a consultation.
MALFORMED_LATE = {
    "pack without name": lambda m, t: m.pop("name"),
    "pack without version": lambda m, t: m.pop("version"),
    "column for a value the finding does not define": lambda m, t: _set(t["columns"], 4, ["onset", "abrupt"]),
    "multi-choice column for an undefined value": lambda m, t: _set(t["columns"], 6, ["site", "knee"]),
    "value without a column": lambda m, t: (
        t["columns"].pop(4),
        [row.pop(4) for row in t["p"]],
        [row.pop(4) for row in t["source"]],
    ),
    "binary column with a value": lambda m, t: _set(t["columns"], 0, ["fever", "yes"]),
    "finding without any column": lambda m, t: (
        t["columns"].pop(0),
        [row.pop(0) for row in t["p"]],
        [row.pop(0) for row in t["source"]],
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_LATE))
def test_inconsistent_pack(tmp_path, case) -> None:
    folder = _mutated(tmp_path, MALFORMED_LATE[case])
    with pytest.raises(PackError):
        load_pack_dir(folder)
