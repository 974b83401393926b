"""Vital signs for the home-health diary: their units, ranges and codes (from data), and a parser for readings.

The numbers live in ``sources/vitals.json``, each vital with the sources of its ranges; this module validates
that file and turns what a person types ("38,5", "101.3 °F", "120/80 mmHg", "154 lb") into a reading in the
vital's canonical unit, rejecting anything it cannot trust with a one-line InputError.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from diagnostician.errors import InputError, PackError

VITALS_FORMAT = "diagnostician-vitals/1"
VITALS_PATH = Path(__file__).resolve().parent / "sources" / "vitals.json"

_REQUIRED = ("code", "label", "unit", "units", "plausible", "normal", "decimals", "loinc", "loinc_display", "ucum", "basis")
_COMPONENT_REQUIRED = ("code", "loinc", "plausible", "normal")


@dataclass(frozen=True)
class Unit:
    """A unit a vital may be entered in: canonical value = value × scale + offset; aliases are lower-case spellings."""

    name: str
    scale: float
    offset: float
    aliases: tuple[str, ...]

    def to_canonical(self, value: float) -> float:
        """The value converted to the vital's canonical unit."""
        return value * self.scale + self.offset


@dataclass(frozen=True)
class Vital:
    """One vital sign: canonical unit, accepted units, plausible and normal ranges (canonical unit), codes and sources.

    A vital with components (blood pressure) is read as several numbers written with '/' ("120/80"); each
    component carries its own ranges and code, and the vital's own ranges are None.
    """

    code: str
    label: str
    unit: str
    units: dict[str, Unit]
    plausible: tuple[float, float] | None
    normal: tuple[float, float] | None
    decimals: int
    loinc: str
    loinc_display: str
    ucum: str
    basis: str
    components: tuple["Vital", ...] = ()
    aliases: tuple[str, ...] = ()
    decreasing: bool = False  # components must strictly decrease (systolic above diastolic)
    example: str = ""  # a typical reading as written, for messages ("120/80")


@dataclass(frozen=True)
class Reading:
    """A checked vital-sign reading in the vital's canonical unit; a pair (systolic, diastolic) for blood pressure."""

    code: str
    value: float | tuple[float, float]
    unit: str


# --- loading ---------------------------------------------------------------------------------------------------


def _key(text: str) -> str:
    """A vital code or alias as compared: lower case, '_'/'-' as spaces, single spaces."""
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def _unit_key(text: str) -> str:
    """A unit spelling as compared: lower case, no spaces, the usual stand-ins for the degree sign made one."""
    text = text.lower().replace("º", "°").replace("˚", "°")
    return "".join(text.split())


def _text(entry: dict[str, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PackError(f"{where}: '{name}' must be a non-empty string")
    return value.strip()


def _number(raw: Any, what: str, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise PackError(f"{where}: {what} must be a finite number, not {raw!r}")
    return float(raw)


def _range(raw: Any, name: str, where: str) -> tuple[float, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 2:
        raise PackError(f"{where}: '{name}' must be null or [low, high]")
    low, high = (_number(v, f"'{name}'", where) for v in raw)
    if low >= high:
        raise PackError(f"{where}: '{name}' low {low:g} must be below high {high:g}")
    return low, high


def _aliases(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(a, str) and a.strip() for a in raw):
        raise PackError(f"{where}: 'aliases' must be a list of non-empty strings")
    return tuple(a.strip().lower() for a in raw)


def _units(raw: Any, canonical: str, where: str) -> dict[str, Unit]:
    if not isinstance(raw, dict) or not raw:
        raise PackError(f"{where}: 'units' must be an object of unit definitions")
    units: dict[str, Unit] = {}
    seen: dict[str, str] = {}
    for name, spec in raw.items():
        at = f"{where} unit {name!r}"
        if not isinstance(spec, dict):
            raise PackError(f"{at}: an object with 'scale', 'offset' and 'aliases' expected")
        for field_name in ("scale", "offset"):
            if field_name not in spec:
                raise PackError(f"{at}: missing field '{field_name}'")
        scale = _number(spec["scale"], "'scale'", at)
        offset = _number(spec["offset"], "'offset'", at)
        if scale <= 0:
            raise PackError(f"{at}: 'scale' must be positive")
        unit = Unit(str(name), scale, offset, _aliases(spec.get("aliases"), at))
        for spelling in (unit.name, *unit.aliases):
            other = seen.setdefault(_unit_key(spelling), unit.name)
            if other != unit.name:
                raise PackError(f"{at}: spelling {spelling!r} also names unit {other!r}")
        units[unit.name] = unit
    if canonical not in units:
        raise PackError(f"{where}: canonical unit {canonical!r} is missing from 'units'")
    if (units[canonical].scale, units[canonical].offset) != (1.0, 0.0):
        raise PackError(f"{where}: canonical unit {canonical!r} must have scale 1 and offset 0")
    return units


def _check_bands(plausible: tuple[float, float] | None, normal: tuple[float, float] | None, where: str) -> None:
    if normal is not None and (plausible is None or not plausible[0] <= normal[0] <= normal[1] <= plausible[1]):
        raise PackError(f"{where}: 'normal' must lie within 'plausible'")


def _component(raw: Any, parent: dict[str, Any], where: str) -> Vital:
    if not isinstance(raw, dict):
        raise PackError(f"{where}: an object expected")
    for name in _COMPONENT_REQUIRED:
        if name not in raw:
            raise PackError(f"{where}: missing field '{name}'")
    code = _text(raw, "code", where)
    where = f"{where} ({code})"
    plausible = _range(raw["plausible"], "plausible", where)
    normal = _range(raw["normal"], "normal", where)
    if plausible is None:
        raise PackError(f"{where}: a component needs a 'plausible' range")
    _check_bands(plausible, normal, where)
    return Vital(
        code=code,
        label=str(raw.get("label") or code.replace("_", " ").capitalize()),
        unit=parent["unit"],
        units=parent["units"],
        plausible=plausible,
        normal=normal,
        decimals=parent["decimals"],
        loinc=_text(raw, "loinc", where),
        loinc_display=str(raw.get("loinc_display") or ""),
        ucum=parent["ucum"],
        basis=parent["basis"],
    )


def _vital(raw: Any, index: int) -> Vital:
    where = f"vitals entry {index}"
    if not isinstance(raw, dict):
        raise PackError(f"{where}: an object expected")
    if isinstance(raw.get("code"), str) and raw["code"].strip():
        where = f"vitals entry {index} ({raw['code'].strip()})"
    for name in _REQUIRED:
        if name not in raw:
            raise PackError(f"{where}: missing field '{name}'")
    code = _text(raw, "code", where)
    if _key(code).replace(" ", "_") != code:
        raise PackError(f"{where}: 'code' must be lower-case words joined by '_'")
    unit = _text(raw, "unit", where)
    decimals = raw["decimals"]
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 6:
        raise PackError(f"{where}: 'decimals' must be a whole number from 0 to 6")
    shared = {
        "unit": unit,
        "units": _units(raw["units"], unit, where),
        "decimals": decimals,
        "ucum": _text(raw, "ucum", where),
        "basis": _text(raw, "basis", where),
    }
    raw_components = raw.get("components") or []
    if not isinstance(raw_components, list) or len(raw_components) == 1:
        raise PackError(f"{where}: 'components' must be a list of two or more parts")
    components = tuple(_component(c, shared, f"{where} component {i}") for i, c in enumerate(raw_components))
    if len({c.code for c in components}) != len(components):
        raise PackError(f"{where}: component codes must differ")
    plausible = _range(raw["plausible"], "plausible", where)
    normal = _range(raw["normal"], "normal", where)
    if components and (plausible is not None or normal is not None):
        raise PackError(f"{where}: a vital with components keeps its ranges on the components (set null)")
    if not components and plausible is None:
        raise PackError(f"{where}: 'plausible' range required")
    _check_bands(plausible, normal, where)
    decreasing = raw.get("decreasing", False)
    if not isinstance(decreasing, bool) or (decreasing and not components):
        raise PackError(f"{where}: 'decreasing' must be true or false, and true only with components")
    return Vital(
        code=code,
        label=_text(raw, "label", where),
        plausible=plausible,
        normal=normal,
        loinc=_text(raw, "loinc", where),
        loinc_display=_text(raw, "loinc_display", where),
        components=components,
        aliases=_aliases(raw.get("aliases"), where),
        decreasing=decreasing,
        example=str(raw.get("example") or ""),
        **shared,
    )


def parse_vitals(data: Any) -> dict[str, Vital]:
    """Validate vitals JSON and build the table, keyed by vital code; PackError naming the bad entry otherwise."""
    if not isinstance(data, dict) or data.get("format") != VITALS_FORMAT:
        raise PackError(f"vitals: format {VITALS_FORMAT} expected")
    entries = data.get("vitals")
    if not isinstance(entries, list) or not entries:
        raise PackError("vitals: 'vitals' must be a non-empty list")
    vitals: dict[str, Vital] = {}
    names: dict[str, str] = {}
    for i, raw in enumerate(entries):
        vital = _vital(raw, i)
        for spelling in (vital.code, *vital.aliases):
            other = names.setdefault(_key(spelling), vital.code)
            if other != vital.code:
                raise PackError(f"vitals entry {i} ({vital.code}): name {spelling!r} also names {other}")
        vitals[vital.code] = vital
    return vitals


def _read(path: Path) -> dict[str, Vital]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PackError(f"vitals file cannot be read: {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise PackError(f"vitals file is not valid JSON: {path}: {exc}") from exc
    return parse_vitals(data)


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Vital]:
    return _read(VITALS_PATH)


def load_vitals(path: Path | None = None) -> dict[str, Vital]:
    """The vital-sign table (shipped file by default), validated; keyed by vital code."""
    if path is None or Path(path).resolve() == VITALS_PATH:
        return dict(_shipped())  # a copy: the cached table stays as loaded
    return _read(Path(path))


# --- readings --------------------------------------------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:e[-+]?\d+)?"
_SINGLE = re.compile(rf"^(?P<num>{_NUMBER})\s*(?P<unit>.*)$", re.IGNORECASE)
_NON_FINITE = re.compile(r"^[-+]?(?:nan|inf|infinity|∞)\b", re.IGNORECASE)


def find_vital(code: str, vitals: dict[str, Vital] | None = None) -> Vital:
    """The vital a code or alias names ("temp", "BP", "SpO2"...), case-insensitively; InputError when none does."""
    table = load_vitals() if vitals is None else vitals
    if isinstance(code, str):
        wanted = _key(code)
        for vital in table.values():
            if wanted == _key(vital.code) or wanted in {_key(a) for a in vital.aliases}:
                return vital
    known = ", ".join(sorted(table))
    raise InputError(f"unknown vital sign {code!r}; known: {known}")


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _accepted(vital: Vital) -> str:
    return ", ".join(vital.units)


def _resolve_unit(vital: Vital, spelling: str) -> Unit:
    wanted = _unit_key(spelling)
    for unit in vital.units.values():
        if wanted in {_unit_key(s) for s in (unit.name, *unit.aliases)}:
            return unit
    raise InputError(f"unknown unit {spelling.strip()!r} for {vital.code}; accepted: {_accepted(vital)}")


def _pick_unit(vital: Vital, in_text: str, given: str | None) -> tuple[Unit, bool]:
    """The unit the reading is in, and whether the person stated one (else the canonical unit is assumed)."""
    if given is not None and not isinstance(given, str):
        raise InputError(f"the unit for {vital.code} must be text, e.g. {vital.unit!r}")
    stated = [s for s in (in_text.strip(), (given or "").strip()) if s]
    units = [_resolve_unit(vital, s) for s in stated]
    if len(units) == 2 and units[0] is not units[1]:
        raise InputError(f"{vital.code}: the value says {stated[0]!r} but the unit given is {stated[1]!r}")
    return (units[0], True) if units else (vital.units[vital.unit], False)


def _to_float(raw: str, vital: Vital) -> float:
    text = raw.strip()
    if _NON_FINITE.match(text):
        raise InputError(f"{vital.code}: {text!r} is not a finite number")
    if re.fullmatch(r"[-+]?\d{1,3},\d{3}", text):
        raise InputError(f"{vital.code}: {text!r} is ambiguous (thousands separator or decimal comma?); write it without the comma, or with a point")
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise InputError(f"{vital.code}: cannot read a number in {text!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{vital.code}: {text!r} is not a finite number")
    return value


def _plain_number(raw: Any, vital: Vital) -> float:
    if isinstance(raw, bool):
        raise InputError(f"{vital.code}: a number is needed, not {raw!r}")
    if not isinstance(raw, (int, float)):
        raise InputError(f"{vital.code}: a number or text such as '{example_text(vital)}' is needed, not {type(raw).__name__}")
    value = float(raw)
    if not math.isfinite(value):
        raise InputError(f"{vital.code}: {raw!r} is not a finite number")
    return value


def example_text(vital: Vital) -> str:
    """A typical reading to show in messages: the middle of the normal (else plausible) band."""

    def middle(v: Vital) -> str:
        band = v.normal or v.plausible or (0.0, 0.0)
        return _fmt((band[0] + band[1]) / 2, vital.decimals)

    if vital.example:
        return vital.example
    if vital.components:
        return "/".join(middle(c) for c in vital.components)
    return f"{middle(vital)} {vital.unit}"


def _checked(value: float, band: tuple[float, float] | None, name: str, vital: Vital, unit: Unit, stated: bool) -> float:
    """The converted value, rounded to the vital's decimals; InputError when it lies outside the plausible range."""
    result = round(unit.to_canonical(value), vital.decimals)
    if band is not None and not band[0] <= result <= band[1]:
        hint = ""
        if not stated:  # no unit typed: say which other unit would make the number plausible
            fits = [u.name for u in vital.units.values() if u.name != vital.unit and band[0] <= round(u.to_canonical(value), vital.decimals) <= band[1]]
            if fits:
                hint = f" (if it is in {fits[0]}, write '{_fmt_raw(value)} {fits[0]}')"
        raise InputError(
            f"{name} {_fmt(result, vital.decimals)} {vital.unit} is outside the plausible range "
            f"{band[0]:g}–{band[1]:g} {vital.unit}; check the value and unit{hint}"
        )
    return result + 0.0  # no negative zero


def _fmt_raw(value: float) -> str:
    return f"{value:g}"


def parse_reading(code: str, text: str | float | int, unit: str | None = None, *, vitals: dict[str, Vital] | None = None) -> Reading:
    """A vital-sign reading from user input, converted to the canonical unit and range-checked.

    ``code`` is a vital code or alias ("temp", "bp", "spo2"); ``text`` a number or text with an optional unit
    ("38,5", "101.3 °F", "120/80 mmHg"); ``unit`` names the unit when the text does not. Without any unit the
    canonical unit is assumed. Every problem raises InputError with a one-line message.
    """
    vital = find_vital(code, vitals)
    if vital.components:
        return _parse_parts(vital, text, unit)
    if isinstance(text, str):
        raw = text.strip()
        if re.fullmatch(rf"\s*{_NUMBER}\s*/\s*{_NUMBER}.*", raw, re.IGNORECASE):
            raise InputError(f"{vital.code} takes one number, not a pair like {raw!r}")
        match = _SINGLE.match(raw)
        if match is None:
            if _NON_FINITE.match(raw):
                raise InputError(f"{vital.code}: {raw!r} is not a finite number")
            raise InputError(f"{vital.code}: cannot read a number in {raw!r}; write e.g. '{example_text(vital)}'")
        if match["unit"][:1] in set("0123456789.,+-/"):
            raise InputError(f"{vital.code}: cannot read a number in {raw!r}; write e.g. '{example_text(vital)}'")
        value = _to_float(match["num"], vital)
        chosen, stated = _pick_unit(vital, match["unit"], unit)
    else:
        value = _plain_number(text, vital)
        chosen, stated = _pick_unit(vital, "", unit)
    return Reading(vital.code, _checked(value, vital.plausible, vital.code, vital, chosen, stated), vital.unit)


def _parse_parts(vital: Vital, text: Any, unit: str | None) -> Reading:
    count = len(vital.components)
    form = "/".join(c.code[:3].upper() for c in vital.components)
    example = example_text(vital)
    if isinstance(text, (tuple, list)) and len(text) == count:
        numbers = [_plain_number(v, vital) for v in text]
        chosen, stated = _pick_unit(vital, "", unit)
    elif isinstance(text, str):
        pattern = r"\s*/\s*".join([rf"({_NUMBER})"] * count)
        match = re.fullmatch(rf"\s*{pattern}\s*(?P<unit>[^\d/]*?)\s*", text, re.IGNORECASE)
        if match is None:
            raise InputError(f"{vital.code} must be written {form}, e.g. '{example}', not {text.strip()!r}")
        numbers = [_to_float(match.group(i + 1), vital) for i in range(count)]
        chosen, stated = _pick_unit(vital, match["unit"], unit)
    else:
        if isinstance(text, bool) or not isinstance(text, (int, float)):
            raise InputError(f"{vital.code}: text such as '{example}' is needed, not {text!r}")
        raise InputError(f"{vital.code} must be written {form}, e.g. '{example}', not a single number")
    values = [round(chosen.to_canonical(n), vital.decimals) for n in numbers]
    if vital.decreasing and any(a <= b for a, b in zip(values, values[1:])):
        written = "/".join(_fmt(v, vital.decimals) for v in values)
        parts = " must be higher than ".join(f"{c.code} ({['first', 'second', 'third'][i] if i < 3 else i + 1})" for i, c in enumerate(vital.components))
        raise InputError(f"{vital.code} {written}: {parts}; check the order")
    checked = tuple(
        _checked(n, c.plausible, f"{c.code} {vital.label.lower()}", vital, chosen, stated) for n, c in zip(numbers, vital.components)
    )
    return Reading(vital.code, checked, vital.unit)  # type: ignore[arg-type]


def is_outside_normal(reading: Reading, vitals: dict[str, Vital] | None = None) -> bool | None:
    """Whether the reading lies outside the usual range (None when the table gives none)."""
    vital = find_vital(reading.code, vitals)
    if vital.components:
        values = reading.value if isinstance(reading.value, tuple) else (reading.value,)
        pairs = list(zip(values, (c.normal for c in vital.components)))
    else:
        pairs = [(reading.value, vital.normal)]
    if any(band is not None and not band[0] <= value <= band[1] for value, band in pairs):  # type: ignore[operator]
        return True
    if any(band is None for _, band in pairs):
        return None
    return False


def format_reading(reading: Reading, vitals: dict[str, Vital] | None = None) -> str:
    """The reading as people write it, e.g. '38.5 °C' or '120/80 mmHg'."""
    vital = find_vital(reading.code, vitals)
    values = reading.value if isinstance(reading.value, tuple) else (reading.value,)
    number = "/".join(_fmt(v, vital.decimals) for v in values)
    return f"{number}{'' if reading.unit == '%' else ' '}{reading.unit}"
