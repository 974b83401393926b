"""Vital-sign definitions (data file) and the reading parser: conversions, aliases, errors, validation."""

from __future__ import annotations

import json
import math

import pytest

from diagnostician.errors import InputError, PackError
from diagnostician.knowledge.vitals import (
    VITALS_PATH,
    Reading,
    find_vital,
    format_reading,
    is_outside_normal,
    load_vitals,
    parse_reading,
)

EXPECTED = {
    "temperature", "heart_rate", "blood_pressure", "blood_glucose",
    "peak_flow", "weight", "respiratory_rate", "oxygen_saturation",
}


# --- conversions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "unit", "value", "canonical"),
    [
        ("temperature", "98.6 °F", None, 37.0, "°C"),
        ("temperature", "98.6F", None, 37.0, "°C"),
        ("temperature", "101.3F", None, 38.5, "°C"),
        ("temperature", "101.3 °F", None, 38.5, "°C"),
        ("temperature", "38.5 C", None, 38.5, "°C"),
        ("temperature", "36.6 ºC", None, 36.6, "°C"),  # ordinal indicator typed for the degree sign
        ("temperature", 98.6, "°f", 37.0, "°C"),
        ("blood_glucose", "100 mg/dL", None, 5.6, "mmol/L"),
        ("blood_glucose", "100", "MG/DL", 5.6, "mmol/L"),
        ("blood_glucose", "5.6 mmol/l", None, 5.6, "mmol/L"),
        ("weight", "154 lb", None, 69.9, "kg"),
        ("weight", "154 LBS", None, 69.9, "kg"),
        ("weight", "70kg", None, 70.0, "kg"),
        ("weight", "3500 g", None, 3.5, "kg"),
        ("weight", "11 stone", None, 69.9, "kg"),
        ("heart_rate", "72 bpm", None, 72.0, "beats/min"),
        ("heart_rate", 72, None, 72.0, "beats/min"),
        ("oxygen_saturation", "97%", None, 97.0, "%"),
        ("peak_flow", "450", "l/min", 450.0, "L/min"),
        ("respiratory_rate", "16 breaths/min", None, 16.0, "breaths/min"),
    ],
)
def test_conversions(code, text, unit, value, canonical):
    reading = parse_reading(code, text, unit)
    assert reading == Reading(code, value, canonical)


def test_values_are_rounded_to_the_vitals_decimals():
    assert parse_reading("temperature", "37.04").value == 37.0
    assert parse_reading("heart_rate", "71.6").value == 72.0
    assert parse_reading("blood_glucose", "101 mg/dl").value == 5.6


def test_decimal_comma():
    assert parse_reading("temperature", "38,5").value == 38.5
    assert parse_reading("weight", "70,4 kg").value == 70.4
    assert parse_reading("temperature", "100,4", "fahrenheit").value == 38.0
    assert parse_reading("blood_glucose", "5,6 mmol/L").value == 5.6


def test_thousands_separator_is_refused_as_ambiguous():
    with pytest.raises(InputError, match="ambiguous"):
        parse_reading("blood_glucose", "1,000")


@pytest.mark.parametrize(
    ("alias", "code"),
    [
        ("temp", "temperature"), ("TEMP", "temperature"), ("Temperature", "temperature"),
        ("hr", "heart_rate"), ("pulse", "heart_rate"), ("Heart Rate", "heart_rate"), ("heart-rate", "heart_rate"),
        ("bp", "blood_pressure"), ("BP", "blood_pressure"), ("blood pressure", "blood_pressure"),
        ("glucose", "blood_glucose"), ("sugar", "blood_glucose"), ("Blood Sugar", "blood_glucose"),
        ("pef", "peak_flow"), ("peak flow", "peak_flow"),
        ("spo2", "oxygen_saturation"), ("SpO2", "oxygen_saturation"), ("o2", "oxygen_saturation"),
        ("rr", "respiratory_rate"), ("wt", "weight"), ("WEIGHT", "weight"),
    ],
)
def test_code_aliases(alias, code):
    assert find_vital(alias).code == code


def test_aliases_work_in_parse_reading():
    assert parse_reading("Temp", "38.5").code == "temperature"
    assert parse_reading("SPO2", "96 %").code == "oxygen_saturation"
    assert parse_reading("Pulse", "60").code == "heart_rate"


def test_unit_in_text_and_argument_may_agree_but_not_conflict():
    assert parse_reading("temperature", "100.4 F", "°F").value == 38.0
    with pytest.raises(InputError, match="unit"):
        parse_reading("temperature", "38 C", "F")


# --- blood pressure -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["120/80", "120 / 80 mmHg", "120/80mmhg", " 120/80 mm Hg "])
def test_blood_pressure_forms(text):
    reading = parse_reading("bp", text)
    assert reading == Reading("blood_pressure", (120.0, 80.0), "mmHg")
    assert format_reading(reading) == "120/80 mmHg"


def test_blood_pressure_pair_and_unit_argument():
    assert parse_reading("blood_pressure", (135, 85)).value == (135.0, 85.0)
    assert parse_reading("blood_pressure", "135/85", "mmHg").value == (135.0, 85.0)


@pytest.mark.parametrize("text", ["80/120", "90/90"])
def test_systolic_must_exceed_diastolic(text):
    with pytest.raises(InputError, match="systolic.*must be higher than diastolic"):
        parse_reading("bp", text)


@pytest.mark.parametrize("text", ["120", "120-80", "120/80/70", "high", 120, "120 over 80"])
def test_blood_pressure_needs_sys_dia_form(text):
    with pytest.raises(InputError, match="SYS/DIA"):
        parse_reading("bp", text)


def test_blood_pressure_components_range_checked():
    with pytest.raises(InputError, match=r"systolic blood pressure 400 mmHg is outside the plausible range 50–300 mmHg"):
        parse_reading("bp", "400/80")
    with pytest.raises(InputError, match=r"diastolic blood pressure 10 mmHg is outside the plausible range 20–200 mmHg"):
        parse_reading("bp", "120/10")


# --- errors ------------------------------------------------------------------------------------------------------


def test_unknown_vital_lists_the_known_ones():
    with pytest.raises(InputError, match="unknown vital sign 'cholesterol'") as info:
        parse_reading("cholesterol", "5")
    assert all(code in str(info.value) for code in EXPECTED)


@pytest.mark.parametrize("text", ["abc", "", "   ", "38.5.2", "thirty eight", "38 5"])
def test_unparseable_number(text):
    with pytest.raises(InputError, match="cannot read a number"):
        parse_reading("temperature", text)


def test_unknown_unit_lists_accepted_units():
    with pytest.raises(InputError, match=r"unknown unit 'K' for temperature; accepted: °C, °F"):
        parse_reading("temperature", "310 K")
    with pytest.raises(InputError, match=r"unknown unit 'stone' for blood_glucose; accepted: mmol/L, mg/dL"):
        parse_reading("glucose", "5", "stone")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "1e400", math.nan, math.inf, -math.inf])
def test_non_finite_numbers(value):
    with pytest.raises(InputError, match="not a finite number"):
        parse_reading("temperature", value)


def test_out_of_plausible_range_after_conversion():
    with pytest.raises(InputError) as info:
        parse_reading("temperature", "52")
    assert str(info.value) == "temperature 52.0 °C is outside the plausible range 25–45 °C; check the value and unit"
    with pytest.raises(InputError, match=r"temperature 100\.0 °C is outside the plausible range 25–45 °C"):
        parse_reading("temperature", "212 °F")
    with pytest.raises(InputError, match=r"oxygen_saturation 101 % is outside the plausible range 50–100 %"):
        parse_reading("spo2", "101")


def test_out_of_range_without_unit_suggests_the_unit_that_fits():
    with pytest.raises(InputError, match="°F"):
        parse_reading("temperature", "101.3")
    with pytest.raises(InputError, match="mg/dL"):
        parse_reading("glucose", "100")


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_a_reading(value):
    with pytest.raises(InputError, match="number"):
        parse_reading("heart_rate", value)
    with pytest.raises(InputError):
        parse_reading("bp", (True, 80))


@pytest.mark.parametrize("value", [None, [38.5], {"v": 1}])
def test_other_types_are_input_errors(value):
    with pytest.raises(InputError):
        parse_reading("temperature", value)


def test_single_value_vital_refuses_a_pair():
    with pytest.raises(InputError, match="one number"):
        parse_reading("temperature", "38/39")


def test_error_messages_are_one_line():
    for code, text in [("xx", "1"), ("temp", "abc"), ("temp", "1 K"), ("temp", "nan"), ("temp", "99"), ("bp", "80/120"), ("bp", "1")]:
        with pytest.raises(InputError) as info:
            parse_reading(code, text)
        assert "\n" not in str(info.value)


# --- normal ranges and formatting ------------------------------------------------------------------------------------


def test_is_outside_normal():
    assert is_outside_normal(parse_reading("temp", "37.0")) is False
    assert is_outside_normal(parse_reading("temp", "37.9")) is False
    assert is_outside_normal(parse_reading("temp", "38.0")) is True
    assert is_outside_normal(parse_reading("temp", "34.5")) is True
    assert is_outside_normal(parse_reading("spo2", "91")) is True
    assert is_outside_normal(parse_reading("bp", "120/80")) is False
    assert is_outside_normal(parse_reading("bp", "150/85")) is True
    assert is_outside_normal(parse_reading("bp", "130/95")) is True
    assert is_outside_normal(parse_reading("bp", "85/55")) is True
    assert is_outside_normal(parse_reading("weight", "70 kg")) is None
    assert is_outside_normal(parse_reading("peak_flow", "400")) is None
    assert is_outside_normal(parse_reading("rr", "18")) is None


def test_format_reading():
    assert format_reading(parse_reading("temp", "38,5")) == "38.5 °C"
    assert format_reading(parse_reading("temp", "100.4F")) == "38.0 °C"
    assert format_reading(parse_reading("bp", "120/80")) == "120/80 mmHg"
    assert format_reading(parse_reading("hr", "72")) == "72 beats/min"
    assert format_reading(parse_reading("glucose", "90 mg/dl")) == "5.0 mmol/L"
    assert format_reading(parse_reading("spo2", "97")) == "97%"


# --- the shipped table ---------------------------------------------------------------------------------------------


def test_shipped_table_has_every_vital():
    assert set(load_vitals()) == EXPECTED


def test_shipped_file_is_package_data():
    assert VITALS_PATH.parent.name == "sources" and VITALS_PATH.suffix == ".json"
    assert json.loads(VITALS_PATH.read_text(encoding="utf-8"))["note"].lower().count("not yet clinically reviewed") == 1


def test_load_vitals_is_cached_but_returns_a_copy():
    first = load_vitals()
    first.pop("weight")
    assert "weight" in load_vitals()
    assert load_vitals()["temperature"] is load_vitals(VITALS_PATH)["temperature"]


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_every_shipped_vital_is_sourced_and_consistent(code):
    vital = load_vitals()[code]
    assert vital.basis.strip() and vital.loinc.strip() and vital.loinc_display.strip() and vital.ucum.strip()
    assert vital.unit in vital.units
    assert (vital.units[vital.unit].scale, vital.units[vital.unit].offset) == (1.0, 0.0)
    assert vital.aliases
    parts = vital.components or (vital,)
    for part in parts:
        assert part.plausible is not None
        if part.normal is not None:
            assert part.plausible[0] <= part.normal[0] < part.normal[1] <= part.plausible[1]


def test_shipped_codes():
    vitals = load_vitals()
    assert vitals["temperature"].loinc == "8310-5"
    assert vitals["heart_rate"].loinc == "8867-4"
    assert vitals["blood_pressure"].loinc == "85354-9"
    assert [(c.code, c.loinc) for c in vitals["blood_pressure"].components] == [("systolic", "8480-6"), ("diastolic", "8462-4")]
    assert vitals["blood_glucose"].loinc == "15074-8"
    assert vitals["peak_flow"].loinc == "19935-6"
    assert vitals["weight"].loinc == "29463-7"
    assert vitals["respiratory_rate"].loinc == "9279-1"
    assert vitals["oxygen_saturation"].loinc in {"59408-5", "2708-6"}
    assert vitals["peak_flow"].normal is None and vitals["weight"].normal is None and vitals["respiratory_rate"].normal is None


# --- malformed files -------------------------------------------------------------------------------------------------


def _shipped_data():
    return json.loads(VITALS_PATH.read_text(encoding="utf-8"))


def _write(tmp_path, data):
    path = tmp_path / "vitals.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_load_vitals_from_a_copy(tmp_path):
    vitals = load_vitals(_write(tmp_path, _shipped_data()))
    assert set(vitals) == EXPECTED
    assert parse_reading("temp", "38", vitals=vitals).value == 38.0


def test_missing_field_names_the_entry(tmp_path):
    data = _shipped_data()
    del data["vitals"][1]["basis"]
    with pytest.raises(PackError, match=r"vitals entry 1 \(heart_rate\): missing field 'basis'"):
        load_vitals(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.update(format="other/1"), "format"),
        (lambda d: d["vitals"][0].update(normal=[30, 50]), r"temperature.*within 'plausible'"),
        (lambda d: d["vitals"][0].update(plausible=[45, 25]), r"temperature.*below high"),
        (lambda d: d["vitals"][0].update(unit="K"), r"temperature.*canonical unit 'K'"),
        (lambda d: d["vitals"][0]["units"]["°F"].update(scale="x"), r"temperature.*'scale'"),
        (lambda d: d["vitals"][0].update(decimals=True), r"temperature.*'decimals'"),
        (lambda d: d["vitals"][1].update(aliases=["temp"]), r"heart_rate.*'temp'"),
        (lambda d: d["vitals"][2]["components"][0].pop("loinc"), r"blood_pressure.*component 0.*'loinc'"),
        (lambda d: d["vitals"][2].update(plausible=[0, 300]), r"blood_pressure.*components"),
        (lambda d: d["vitals"].append("oops"), r"vitals entry 8"),
    ],
)
def test_malformed_files_raise_pack_error(tmp_path, change, words):
    data = _shipped_data()
    change(data)
    with pytest.raises(PackError, match=words):
        load_vitals(_write(tmp_path, data))


def test_unreadable_files_raise_pack_error(tmp_path):
    with pytest.raises(PackError, match="cannot be read"):
        load_vitals(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(PackError, match="not valid JSON"):
        load_vitals(bad)
