"""Readers for the DDXPlus release files: evidences, conditions, French-to-English code maps, patient records."""

from __future__ import annotations

import ast
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from diagnostician.errors import CaseFileError

if TYPE_CHECKING:
    from diagnostician.knowledge.schema import Pack

SEP = "_@_"


@dataclass(frozen=True)
class PatientRecord:
    """One DDXPlus patient in English codes: demographics, findings and the reference differential."""

    age: int
    sex: str  # "F" or "M"
    pathology: str
    initial_evidence: str
    # finding code → True (binary present), value code (categorical) or tuple of value codes (multi)
    evidences: dict[str, Any] = field(default_factory=dict)
    differential: tuple[tuple[str, float], ...] = ()
    row: int = 0


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"cannot read {path}: {exc}") from exc


@dataclass
class DDXPlusRelease:
    """The English release plus the maps from the French-coded release onto it."""

    evidences: dict[str, dict[str, Any]]
    conditions: dict[str, dict[str, Any]]
    fr_to_en_evidence: dict[str, str]
    fr_to_en_value: dict[str, dict[str, str]]  # English evidence code → French value → English value
    fr_to_en_condition: dict[str, str]

    @classmethod
    def load(cls, en_dir: str | Path, fr_dir: str | Path | None = None) -> "DDXPlusRelease":
        """Read the English release and, if given, build the positional French→English maps."""
        en_dir = Path(en_dir)
        ev = _read_json(en_dir / "release_evidences.json")
        cond = _read_json(en_dir / "release_conditions.json")
        fr_ev_map: dict[str, str] = {}
        fr_val_map: dict[str, dict[str, str]] = {}
        fr_cond_map: dict[str, str] = {}
        if fr_dir is not None:
            fr_dir = Path(fr_dir)
            ev_fr = _read_json(fr_dir / "release_evidences_fr.json")
            cond_fr = _read_json(fr_dir / "release_conditions_fr.json")
            if len(ev_fr) != len(ev):
                raise CaseFileError("French and English evidence files differ in length")
            # The mapping is positional (see shared/README.md); the question text must agree.
            for (code_fr, e_fr), (code_en, e_en) in zip(ev_fr.items(), ev.items()):
                if e_fr.get("question_fr") != e_en.get("question_fr"):
                    raise CaseFileError(f"positional evidence map broken at {code_fr} / {code_en}")
                fr_ev_map[code_fr] = code_en
                vals_fr = list(e_fr.get("value_meaning", {}))
                vals_en = list(e_en.get("value_meaning", {}))
                vmap = {str(a): str(b) for a, b in zip(vals_fr, vals_en)}
                for v in e_fr.get("possible-values", []):  # numeric scales map to themselves
                    vmap.setdefault(str(v), str(v))
                fr_val_map[code_en] = vmap
            for c in cond_fr.values():
                fr_cond_map[c["cond-name-fr"]] = c["cond-name-eng"]
        return cls(ev, cond, fr_ev_map, fr_val_map, fr_cond_map)

    @classmethod
    def from_pack(cls, pack: "Pack") -> "DDXPlusRelease":
        """The release as the shipped pack knows it (English codes, French aliases), no raw files needed."""
        kinds = {"binary": "B", "categorical": "C", "multi": "M"}
        ev = {f.code: {"data_type": kinds[f.kind]} for f in pack.findings}
        cond = {c.code: {} for c in pack.conditions}
        al = pack.aliases or {}
        return cls(ev, cond, dict(al.get("evidences", {})), dict(al.get("values", {})), dict(al.get("conditions", {})))

    def parse_evidences(self, tokens: list[str], french: bool = False) -> dict[str, Any]:
        """Turn DDXPlus evidence tokens into {code: True | value | tuple(values)} in English codes."""
        out: dict[str, Any] = {}
        for tok in tokens:
            code, _, value = tok.partition(SEP)
            if french:
                if code not in self.fr_to_en_evidence:
                    raise CaseFileError(f"unknown French evidence {code!r}")
                code = self.fr_to_en_evidence[code]
                if value:
                    value = self.fr_to_en_value[code].get(value, value)
            spec = self.evidences.get(code)
            if spec is None:
                raise CaseFileError(f"unknown evidence {code!r}")
            kind = spec["data_type"]
            if kind == "B":
                out[code] = True
            elif kind == "C":
                out[code] = str(value)
            else:
                out[code] = tuple(sorted(set(out.get(code, ())) | {str(value)}))
        return out

    def read_patients(self, path: str | Path, limit: int | None = None) -> Iterator[PatientRecord]:
        """Stream patient records from a DDXPlus CSV (English or French codes, detected per file)."""
        path = Path(path)
        try:
            handle = path.open(encoding="utf-8", newline="")
        except OSError as exc:
            raise CaseFileError(f"cannot open {path}: {exc}") from exc
        with handle:
            try:
                yield from self._rows(csv.DictReader(handle), path, limit)
            except UnicodeDecodeError as exc:
                raise CaseFileError(f"{path}: not UTF-8 text ({exc.reason})") from exc
            except csv.Error as exc:
                raise CaseFileError(f"{path}: not a readable CSV file ({exc})") from exc

    def _rows(self, reader: csv.DictReader, path: Path, limit: int | None) -> Iterator[PatientRecord]:
        need = {"AGE", "SEX", "PATHOLOGY", "INITIAL_EVIDENCE", "EVIDENCES"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise CaseFileError(f"{path}: not a DDXPlus patient file (columns {sorted(need)} expected)")
        french: bool | None = None
        for i, row in enumerate(reader):
            if limit is not None and i >= limit:
                return
            where = f"{path}: row {i + 2}"
            try:
                tokens = ast.literal_eval(row["EVIDENCES"] or "")
                diff_raw = ast.literal_eval(row["DIFFERENTIAL_DIAGNOSIS"]) if row.get("DIFFERENTIAL_DIAGNOSIS") else []
                age = int(row["AGE"] or "")
                if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                    raise ValueError("EVIDENCES must be a list of evidence codes")
                if not isinstance(diff_raw, list) or not all(isinstance(d, (list, tuple)) and len(d) == 2 for d in diff_raw):
                    raise ValueError("DIFFERENTIAL_DIAGNOSIS must be a list of [condition, probability] pairs")
                if french is None:
                    french = row["INITIAL_EVIDENCE"] not in self.evidences and row["INITIAL_EVIDENCE"] in self.fr_to_en_evidence
                names = self.fr_to_en_condition if french else {}
                diff = tuple((names.get(str(n), str(n)), float(p)) for n, p in diff_raw)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                raise CaseFileError(f"{where} is malformed: {exc}") from exc
            pathology = row["PATHOLOGY"]
            initial = row["INITIAL_EVIDENCE"]
            if french:
                pathology = self.fr_to_en_condition.get(pathology, pathology)
                initial = self.fr_to_en_evidence.get(initial, initial)
            if pathology not in self.conditions:
                raise CaseFileError(f"{where}: unknown pathology {row['PATHOLOGY']!r}")
            if initial not in self.evidences:
                raise CaseFileError(f"{where}: unknown initial evidence {row['INITIAL_EVIDENCE']!r}")
            try:
                evidences = self.parse_evidences(tokens, french=bool(french))
            except CaseFileError as exc:
                raise CaseFileError(f"{where}: {exc}") from exc
            yield PatientRecord(
                age=age,
                sex=(row["SEX"] or "").strip().upper(),
                pathology=pathology,
                initial_evidence=initial,
                evidences=evidences,
                differential=diff,
                row=i,
            )
