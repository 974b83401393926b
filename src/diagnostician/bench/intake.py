"""The intake benchmark: how well free text is read into findings, scored against a labelled utterance set."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from diagnostician.bench.jsonl import read_jsonl
from diagnostician.dialogue.mentions import ABSENT, Reading
from diagnostician.dialogue.nlu import read_text
from diagnostician.errors import CaseFileError
from diagnostician.knowledge.schema import Pack

DEFAULT_SET = Path(__file__).parent / "data" / "intake_en.jsonl"


def load_intake_set(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Labelled utterances from a JSONL file (id, text, findings [{code, polarity, values?, value?}], age, sex, proxy, tags)."""
    p = Path(path) if path else DEFAULT_SET
    items = []
    for n, item in read_jsonl(p, "an intake item"):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not isinstance(item.get("findings"), list):
            raise CaseFileError(f"{p}:{n}: not an intake item: needs 'text' and 'findings'")
        items.append(item)
    return items


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4), "tp": tp, "fp": fp, "fn": fn}


def _gold_values(g: dict[str, Any]) -> set[str]:
    vals = g.get("values") or ([] if g.get("value") is None else [g["value"]])
    return {str(v) for v in vals}


def _pred_values(m: Any) -> set[str]:
    if m.value is None:
        return set()
    return {str(v) for v in m.value} if isinstance(m.value, tuple) else {str(m.value)}


def score(items: Sequence[dict[str, Any]], readings: Sequence[Reading], min_confidence: float = 0.0) -> dict[str, Any]:
    """Precision / recall / F1 of findings, of (finding, polarity) pairs and of values; polarity and demographics accuracy."""
    c: Counter[str] = Counter()
    by_tag: dict[str, Counter[str]] = defaultdict(Counter)
    errors = []
    for item, reading in zip(items, readings):
        gold = {g["code"]: g for g in item["findings"]}
        pred = {m.code: m for m in reading.mentions if m.confidence >= min_confidence}
        tp_codes = gold.keys() & pred.keys()
        fp_codes, fn_codes = pred.keys() - gold.keys(), gold.keys() - pred.keys()
        pol_ok = {k for k in tp_codes if gold[k]["polarity"] == pred[k].polarity}
        gvals = {(k, v) for k, g in gold.items() if g["polarity"] != ABSENT for v in _gold_values(g)}
        pvals = {(k, v) for k, m in pred.items() if m.polarity != ABSENT and k in {g for g, _ in gvals} for v in _pred_values(m)}
        counts = {
            "f_tp": len(tp_codes), "f_fp": len(fp_codes), "f_fn": len(fn_codes),
            "p_tp": len(pol_ok), "p_fp": len(fp_codes) + len(tp_codes) - len(pol_ok), "p_fn": len(fn_codes) + len(tp_codes) - len(pol_ok),
            "v_tp": len(gvals & pvals), "v_fp": len(pvals - gvals), "v_fn": len(gvals - pvals),
            "neg_gold": sum(1 for g in gold.values() if g["polarity"] == ABSENT),
            "neg_found": sum(1 for k in tp_codes if gold[k]["polarity"] == ABSENT),
            "neg_right": sum(1 for k in pol_ok if gold[k]["polarity"] == ABSENT),
            "neg_pred_found": sum(1 for k in tp_codes if pred[k].polarity == ABSENT),
            "neg_pred_right": sum(1 for k in pol_ok if pred[k].polarity == ABSENT),
        }
        c.update(counts)
        for tag in item.get("tags", []) or ["untagged"]:
            by_tag[tag].update(counts)
        for key, attr in (("age", "age"), ("sex", "sex"), ("proxy", "proxy")):
            if item.get(key) is not None:
                c[f"{key}_n"] += 1
                got = getattr(reading, attr)
                ok = (got is not None and abs(float(got) - float(item[key])) <= 0.05 + 0.02 * float(item[key])) if key == "age" else got == item[key]
                c[f"{key}_ok"] += bool(ok)
        if fp_codes or fn_codes or len(pol_ok) < len(tp_codes):
            errors.append({
                "id": item.get("id"),
                "missed": sorted(fn_codes),
                "extra": sorted(fp_codes),
                "wrong_polarity": sorted(k for k in tp_codes - pol_ok),
            })

    def block(k: Counter[str]) -> dict[str, Any]:
        return {
            "findings": _prf(k["f_tp"], k["f_fp"], k["f_fn"]),
            "findings_with_polarity": _prf(k["p_tp"], k["p_fp"], k["p_fn"]),
            "values": _prf(k["v_tp"], k["v_fp"], k["v_fn"]),
            "polarity_accuracy": round(k["p_tp"] / k["f_tp"], 4) if k["f_tp"] else None,
            "negation_polarity_accuracy": round(k["neg_right"] / k["neg_found"], 4) if k["neg_found"] else None,
            "negation_precision": round(k["neg_pred_right"] / k["neg_pred_found"], 4) if k["neg_pred_found"] else None,
            "denied_findings_found": round(k["neg_found"] / k["neg_gold"], 4) if k["neg_gold"] else None,
        }

    out = block(c)
    out["demographics"] = {key: {"n": c[f"{key}_n"], "accuracy": round(c[f"{key}_ok"] / c[f"{key}_n"], 4) if c[f"{key}_n"] else None} for key in ("age", "sex", "proxy")}
    out["by_tag"] = {tag: {"n_utterances": None, **block(k)} for tag, k in sorted(by_tag.items())}
    tag_counts = Counter(t for item in items for t in (item.get("tags") or ["untagged"]))
    for tag, row in out["by_tag"].items():
        row["n_utterances"] = tag_counts[tag]
    out["errors"] = errors
    return out


def run_intake(
    pack: Pack,
    items: Sequence[dict[str, Any]],
    reader: Callable[[Pack, str], Reading] = read_text,
    min_confidence: float = 0.0,
) -> dict[str, Any]:
    """Read every utterance and score the readings; also time them."""
    t0 = time.perf_counter()
    first = time.perf_counter()
    readings = []
    for i, item in enumerate(items):
        readings.append(reader(pack, item["text"]))
        if i == 0:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    out = {"utterances": len(items), "labels": sum(len(i["findings"]) for i in items), "min_confidence": min_confidence}
    out.update(score(items, readings, min_confidence))
    out["timing"] = {"first_call_s": round(first, 4), "total_s": round(total, 4), "per_utterance_ms": round(1000 * total / max(1, len(items)), 3)}
    return out


def coverage(pack: Pack, items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """How many of the pack's findings the set labels at least once."""
    seen = {g["code"] for item in items for g in item["findings"]}
    asked = [f for f in pack.findings if f.stage == "history"]  # results are entered, not said in a complaint
    missing = [f.code for f in asked if f.code not in seen]
    return {"findings": len(asked), "labelled": len(asked) - len(missing), "missing": missing}


def _items(field: str) -> list[str]:
    parts = [p.strip(" .;") for p in str(field or "").replace(";", ",").split(",")]
    return [p for p in parts if p and p != "-"]


def vignette_recovery(pack: Pack, path: str | Path, reader: Callable[[Pack, str], Reading] = read_text) -> dict[str, Any]:
    """Share of each vignette's stated and denied findings that reading its whole free text recovers.

    Avey-format vignettes list the chief complaints and the absent findings as short items. Each
    item read alone gives the finding(s) it names in the pack (items the pack has no finding for
    are counted apart); reading the whole vignette (demographics, presentation, absent findings)
    must then give those findings with the same polarity.
    """
    rows = [v for _, v in read_jsonl(path, "a vignette")]
    c: Counter[str] = Counter()
    per_vignette = []
    for v in rows:
        text = " ".join(str(v.get(k) or "") for k in ("demographics", "presentation", "absent_findings", "physical_history", "social_history"))
        text = text[:5000]
        got = {m.code: m.polarity for m in reader(pack, text).mentions}
        hit = total = 0
        for kind, field, want in (("stated", "chief_complaints", "present"), ("denied", "absent_findings", ABSENT)):
            for item in _items(v.get(field, "")):
                c[f"{kind}_items"] += 1
                codes = {m.code for m in reader(pack, item).mentions if m.polarity == want}
                if not codes:
                    continue
                c[f"{kind}_mappable"] += 1
                total += 1
                if any(got.get(code) == want for code in codes):
                    c[f"{kind}_recovered"] += 1
                    hit += 1
        if total:
            per_vignette.append(hit / total)
    out: dict[str, Any] = {"vignettes": len(rows)}
    for kind in ("stated", "denied"):
        n, m, r = c[f"{kind}_items"], c[f"{kind}_mappable"], c[f"{kind}_recovered"]
        out[kind] = {"items": n, "in_pack": m, "recovered": r, "recovered_share": round(r / m, 4) if m else None}
    out["mean_share_per_vignette"] = round(sum(per_vignette) / len(per_vignette), 4) if per_vignette else None
    return out

