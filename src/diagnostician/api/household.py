"""The family health record over HTTP: members, their diary of readings and symptoms, plots, and follow-ups.

One household per server: the record lives in the server's store (the same database as the
consultations), and every API key of the server reaches the same household. When the server requires
keys, only requests with a valid key get here (the key middleware guards every /v1 path); the record is
not split per key.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Optional, Union

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StringConstraints, model_validator

from diagnostician.api.auth import SCOPE_KEY
from diagnostician.api.models import ConsultationOut, Problem
from diagnostician.consult.service import ConsultationService
from diagnostician.api.problems import PROBLEM_JSON, problem
from diagnostician.consult.household import HISTORY_KINDS, MAX_HISTORY, MAX_NAME, MAX_TEXT, Household, history_item, parse_when
from diagnostician.consult.plot import series_svg
from diagnostician.knowledge.vitals import load_vitals

PREFIX = "/v1/household"
TAG = "household"
SVG = "image/svg+xml"

ShortText = Annotated[str, StringConstraints(strict=True, max_length=32)]
Name = Annotated[str, StringConstraints(strict=True, max_length=MAX_NAME)]
Note = Annotated[str, StringConstraints(strict=True, max_length=MAX_TEXT)]
Age = Union[StrictInt, StrictFloat, ShortText]
MemberId = Annotated[str, Path(min_length=1, max_length=100, description="The member's id (as returned when it was created).")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


# ---------------------------------------------------------------- requests


class HistoryIn(_In):
    """A chronic condition, medication, allergy or antecedent."""

    kind: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=32)] = Field(description=f"One of {', '.join(HISTORY_KINDS)}.")
    text: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_TEXT)] = Field(examples=["asthma"])


def _one_age(birth_date: Optional[str], age: Any) -> None:
    if birth_date is not None and birth_date.strip() and age is not None:
        raise ValueError("give a birth date or an age, not both")


class CreateMember(_In):
    """A new household member: name, sex, and a birth date or an age."""

    name: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_NAME)] = Field(examples=["Mia"])
    sex: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=16)] = Field(description="F or M ('female', 'male' too).", examples=["F"])
    birth_date: Optional[ShortText] = Field(default=None, description="YYYY-MM-DD; or give `age`.", examples=["2019-03-14"])
    age: Optional[Age] = Field(default=None, description="Age in years, or text such as '8 months', when the birth date is not known.")
    pregnant: StrictBool = False
    history: Annotated[list[HistoryIn], Field(max_length=MAX_HISTORY)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _birth_date_or_age(self) -> "CreateMember":
        _one_age(self.birth_date, self.age)
        return self


class UpdateMember(_In):
    """Profile fields to change; fields left out stay as they are (history is not changed here)."""

    name: Optional[Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_NAME)]] = None
    sex: Optional[Annotated[str, StringConstraints(strict=True, min_length=1, max_length=16)]] = None
    birth_date: Optional[ShortText] = Field(default=None, description="YYYY-MM-DD; null clears it (then give `age`).")
    age: Optional[Age] = Field(default=None, description="Age now; replaces the birth date.")
    pregnant: Optional[StrictBool] = None

    @model_validator(mode="after")
    def _checked(self) -> "UpdateMember":
        for name in ("name", "sex", "pregnant"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        _one_age(self.birth_date, self.age)
        return self


class DiaryIn(_In):
    """A diary entry: a vital-sign reading, or a symptom with its severity."""

    kind: Literal["vital", "symptom"]
    code: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_NAME)] = Field(
        description="Vital: its code or an alias (temperature, bp, spo2 …; see /v1/household/vitals). Symptom: its name, e.g. 'cough'.",
        examples=["temperature"],
    )
    value: Union[StrictInt, StrictFloat, Annotated[str, StringConstraints(strict=True, max_length=64)], None] = Field(
        default=None,
        description="Vital: the reading, a number or text with a unit ('101.3 F', '120/80'). Symptom: its severity, if `severity` is not given.",
        examples=["38.4", "120/80"],
    )
    unit: Optional[ShortText] = Field(default=None, description="The unit, when `value` does not say it (vital only).")
    severity: Optional[Union[StrictInt, ShortText]] = Field(default=None, description="Symptom only: a whole number from 0 to 10.")
    at: Optional[Annotated[str, StringConstraints(strict=True, max_length=64)]] = Field(default=None, description="When it was measured or felt: ISO 8601 (naive = UTC); default now.")
    note: Optional[Note] = None

    @model_validator(mode="after")
    def _fits_kind(self) -> "DiaryIn":
        if self.kind == "vital":
            if self.value is None or (isinstance(self.value, str) and not self.value.strip()):
                raise ValueError("a vital-sign reading needs a value")
            if self.severity is not None:
                raise ValueError("severity is for symptoms; a vital sign has a value")
        else:
            if self.unit is not None:
                raise ValueError("a unit is for vital signs; a symptom has a severity")
            if self.severity is not None and self.value is not None:
                raise ValueError("give a symptom's severity once (`severity`)")
        return self


# ---------------------------------------------------------------- responses


class HistoryOut(BaseModel):
    """A history item."""

    kind: str
    text: str


class MemberOut(BaseModel):
    """A household member's profile."""

    id: str
    name: str
    sex: Literal["F", "M"]
    birth_date: Optional[str] = Field(description="YYYY-MM-DD, when known.")
    age: Optional[float] = Field(description="The age given instead of a birth date, in years on `age_on_date`.")
    age_on_date: Optional[str]
    pregnant: bool
    history: list[HistoryOut]
    age_now: float = Field(description="Age in years today.")


class DiaryEntryOut(BaseModel):
    """A diary entry; vital readings are in the vital's canonical unit."""

    id: str
    at: str = Field(description="ISO 8601, UTC.")
    kind: Literal["vital", "symptom"]
    code: str
    text: str = Field(description="The entry as people write it.")
    value: Union[float, list[float], None] = Field(description="Vital: the value ([systolic, diastolic] for blood pressure). Symptom: its severity.")
    unit: Optional[str] = None
    outside_normal: Optional[bool] = Field(default=None, description="Vital only: outside the usual adult range.")
    note: Optional[str] = None


class PlotOut(BaseModel):
    """One plotted series: a vital sign (blood pressure as two) or a symptom's severity over time."""

    index: int = Field(description="Its place in the list; the SVG alone is at plots/{index}.svg.")
    title: str
    unit: str
    points: int = Field(description="How many readings it plots.")
    svg: str = Field(description="A standalone SVG document.")


class FollowupOut(BaseModel):
    """A planned re-check of a stored consultation."""

    id: str
    consultation_id: str
    member_id: Optional[str]
    due_at: str = Field(description="ISO 8601, UTC.")
    due: bool = Field(description="Open and due now.")
    status: Literal["open", "done", "cancelled"]
    plan: dict[str, Any]
    next_consultation_id: Optional[str]


class PlanFollowupIn(_In):
    """Plan the re-check of a stored consultation from its assessment's care plan."""

    consultation_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class StartFollowupIn(_In):
    """What the patient says at a follow-up: which earlier symptoms are still there, and anything new."""

    still: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], Optional[StrictBool]] = Field(
        default_factory=dict,
        max_length=300,
        description="For symptoms of the previous consultation (the follow-up's `ongoing` codes): true = still there, false = gone, null = not sure.",
    )
    text: Optional[Annotated[str, StringConstraints(max_length=5000)]] = Field(default=None, description="What is new or worse, in the patient's words.")
    findings: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], Any] = Field(
        default_factory=dict, max_length=300, description="New findings as {code: value}; they win over the text and the previous answers."
    )


class VitalOut(BaseModel):
    """A vital sign the diary accepts."""

    code: str
    label: str
    unit: str = Field(description="The canonical unit values are stored in.")
    units: list[str] = Field(description="Units a value may be given in.")
    aliases: list[str]
    example: str


# ---------------------------------------------------------------- routes


def _household(request: Request) -> Household:
    return request.app.state.household


HouseholdDep = Annotated[Household, Depends(_household)]


def _service(request: Request) -> ConsultationService:
    return request.app.state.service


ServiceDep = Annotated[ConsultationService, Depends(_service)]


def _key_name(request: Request) -> Optional[str]:
    return request.scope.get(SCOPE_KEY)


KeyNameDep = Annotated[Optional[str], Depends(_key_name)]


def _by_id(household: Household, member_id: str) -> str:
    """The member id of a path, checked: paths name members by id only (a name would reach the access log)."""
    return household.member_by_id(member_id).id  # MemberNotFoundError → 404

_PROBLEM_TEXT = {
    400: "Malformed JSON or request",
    404: "No such household member or follow-up",
    409: "The follow-up is already closed",
    413: "Request body too large",
    415: "The body is not sent as application/json",
    422: "Invalid input: validation error, a date that cannot be read, an unknown or implausible vital sign",
    503: "The record is encrypted and the server has no passphrase, or storage is unavailable",
}


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": Problem, "description": _PROBLEM_TEXT[c], "content": {PROBLEM_JSON: {}}} for c in codes}


def router() -> APIRouter:
    """The household routes, under /v1/household."""
    r = APIRouter(prefix=PREFIX, tags=[TAG])

    @r.get("/vitals", response_model=list[VitalOut], summary="Vital signs the diary accepts")
    def get_vitals() -> list[dict[str, Any]]:
        """Codes, units and an example of each vital sign a diary reading may record."""
        from diagnostician.knowledge.vitals import example_text

        return [
            {"code": v.code, "label": v.label, "unit": v.unit, "units": list(v.units), "aliases": list(v.aliases), "example": example_text(v)}
            for v in load_vitals().values()
        ]

    @r.post("/members", status_code=201, response_model=MemberOut, summary="Add a household member", responses=_problems(400, 413, 415, 422, 503))
    def create_member(body: CreateMember, response: Response, household: HouseholdDep) -> dict[str, Any]:
        """Add a member to the household record: name (unique in the household), sex, and a birth date or an age.

        The household is shared: one per server (per database), the same for every API key of the server.
        """
        history = [history_item(h.kind, h.text) for h in body.history]
        m = household.add_member(body.name, body.sex, body.birth_date, body.age, body.pregnant, history)
        response.headers["Location"] = f"{PREFIX}/members/{m.id}"
        return m.view()

    @r.get("/members", response_model=list[MemberOut], summary="List household members", responses=_problems(503))
    def list_members(household: HouseholdDep) -> list[dict[str, Any]]:
        """Every member of the household (shared by every API key of the server), oldest record first."""
        return [m.view() for m in household.members()]

    @r.get("/members/{member_id}", response_model=MemberOut, summary="Get a household member", responses=_problems(404, 503))
    def get_member(member_id: MemberId, household: HouseholdDep) -> dict[str, Any]:
        """One member's profile with their age today."""
        return household.member_by_id(member_id).view()

    @r.patch("/members/{member_id}", response_model=MemberOut, summary="Change a member's profile", responses=_problems(400, 404, 413, 415, 422, 503))
    def update_member(member_id: MemberId, body: UpdateMember, household: HouseholdDep) -> dict[str, Any]:
        """Change name, sex, birth date, age or pregnancy; fields left out stay as they are."""
        changes = {k: getattr(body, k) for k in body.model_fields_set}
        return household.update_member(_by_id(household, member_id), **changes).view()

    @r.delete("/members/{member_id}", status_code=204, response_class=Response, summary="Delete a member and all their data", responses=_problems(404, 503))
    def delete_member(member_id: MemberId, household: HouseholdDep) -> Response:
        """Delete the member with their consultations, diary and follow-ups, for good."""
        household.delete_member(_by_id(household, member_id))
        return Response(status_code=204)

    @r.post("/members/{member_id}/diary", status_code=201, response_model=DiaryEntryOut, summary="Add a diary entry", responses=_problems(400, 404, 413, 415, 422, 503))
    def add_diary(member_id: MemberId, body: DiaryIn, household: HouseholdDep) -> dict[str, Any]:
        """Record a vital-sign reading (converted to its canonical unit and range-checked) or a symptom with its severity (0–10)."""
        member_id = _by_id(household, member_id)
        at = parse_when(body.at)
        if body.kind == "vital":
            assert body.value is not None  # checked by the model
            entry = household.record_vital(member_id, body.code, body.value, body.unit, at=at, note=body.note or "")
        else:
            severity = body.severity if body.severity is not None else body.value
            entry = household.record_symptom(member_id, body.code, severity, at=at, note=body.note or "")  # type: ignore[arg-type]
        return entry.view()

    @r.get("/members/{member_id}/diary", response_model=list[DiaryEntryOut], summary="Get a member's diary", responses=_problems(404, 503))
    def get_diary(member_id: MemberId, household: HouseholdDep) -> list[dict[str, Any]]:
        """Every diary entry of the member, oldest first."""
        return [e.view() for e in household.diary(_by_id(household, member_id))]

    @r.get("/members/{member_id}/plots", response_model=list[PlotOut], summary="Plot a member's diary", responses=_problems(404, 503))
    def get_plots(member_id: MemberId, household: HouseholdDep) -> list[dict[str, Any]]:
        """One SVG chart per vital sign (blood pressure as two) and per scored symptom, in the order they first appear."""
        return [
            {"index": i, "title": s.title, "unit": s.unit, "points": len(s.points), "svg": series_svg(s)}
            for i, s in enumerate(household.series(_by_id(household, member_id)))
        ]

    @r.get(
        "/members/{member_id}/plots/{index}.svg",
        response_class=Response,
        summary="One plot as SVG",
        responses={**_problems(404, 422, 503), 200: {"content": {SVG: {}}}},
    )
    def get_plot(member_id: MemberId, index: Annotated[int, Path(ge=0, le=10_000)], household: HouseholdDep) -> Response:
        """The chart at `index` of the member's plots, as an SVG document."""
        series = household.series(_by_id(household, member_id))
        if index >= len(series):
            return problem(404, "plot-not-found", "No such plot", f"member {member_id} has {len(series)} plot(s); there is no plot {index}")
        return Response(series_svg(series[index]), media_type=SVG)

    @r.get("/followups", response_model=list[FollowupOut], summary="List follow-ups", responses=_problems(404, 422, 503))
    def list_followups(
        household: HouseholdDep,
        due: Optional[bool] = Query(None, description="true: only open follow-ups due now; false or absent: all of `status`."),
        member: Optional[str] = Query(None, min_length=1, max_length=100, description="Only this member's (id or name)."),
        status: Literal["open", "done", "cancelled", "all"] = Query("open", description="Which follow-ups; `all` for every status."),
    ) -> list[dict[str, Any]]:
        """Planned re-checks of stored consultations, soonest due first."""
        found = household.followups(due_only=bool(due), member=member, status=None if status == "all" else status)
        return [f.view() for f in found]

    @r.get("/followups/{followup_id}", response_model=FollowupOut, summary="Get a follow-up", responses=_problems(404, 503))
    def get_followup(followup_id: Annotated[str, Path(min_length=1, max_length=100)], household: HouseholdDep) -> dict[str, Any]:
        """One follow-up with its care plan."""
        return household.followup(followup_id).view()

    @r.get("/export", summary="Export as a FHIR R4 Bundle", responses={200: {"content": {"application/fhir+json": {}}}, **_problems(404, 503)})
    def export_record(household: HouseholdDep, member: Annotated[Optional[str], Query(max_length=100, description="A member's id; default everyone.")] = None) -> Response:
        """One member's record, or the whole household's, as a FHIR R4 collection Bundle (members, history, diary, consultations, follow-ups)."""
        from diagnostician.consult.fhir_record import export_bundle

        members = [household.member_by_id(member)] if member else household.members()
        return Response(json.dumps(export_bundle(household, members), ensure_ascii=False), media_type="application/fhir+json")

    @r.post("/import", status_code=201, summary="Import a FHIR R4 Bundle", responses=_problems(400, 413, 415, 422, 503))
    def import_record(bundle: dict[str, Any], household: HouseholdDep) -> dict[str, Any]:
        """Add the members of a Bundle (as /export writes it): checked whole before anything is stored; consultations and
        care plans are exported for clinicians and not re-imported (counted in `skipped`). Large households may need a
        larger body limit (DIAGNOSTICIAN_MAX_BODY_BYTES)."""
        from diagnostician.consult.fhir_record import import_record as read_in

        result = read_in(household, bundle)
        return {"members": [m.view() for m in result.members], "skipped": {k: v for k, v in vars(result).items() if k != "members"}}

    @r.post("/followups", status_code=201, response_model=Optional[FollowupOut], summary="Plan a follow-up", responses=_problems(400, 404, 413, 415, 422, 503))
    def plan_followup(body: PlanFollowupIn, household: HouseholdDep, service: ServiceDep, key_name: KeyNameDep) -> Any:
        """Store a consultation's care plan as a follow-up due at its re-check time (null for an emergency: act now, no home re-check).

        A follow-up consultation inherits the first report of each symptom, so the next re-check counts the days from then."""
        loaded = service.load(body.consultation_id, key_name)  # 404 for another key's consultation
        fu = household.plan(loaded.id, loaded.consultation)
        return None if fu is None else fu.view()

    @r.get("/followups/{followup_id}/ongoing", summary="What a follow-up asks about", responses=_problems(404, 409, 503))
    def followup_ongoing(followup_id: Annotated[str, Path(min_length=1, max_length=100)], household: HouseholdDep, service: ServiceDep) -> dict[str, Any]:
        """The symptoms of the previous consultation to ask about again ("is it still there?"), with how long each has lasted."""
        start = household.begin_followup(followup_id, service.pack)
        return {
            "followup_id": start.followup.id,
            "ongoing": [{"finding": code, "question": service.pack.finding(code).question, "days": round(start.days.get(code, 0.0), 2)} for code in start.ongoing],
        }

    @r.post("/followups/{followup_id}/start", status_code=201, response_model=ConsultationOut, summary="Start a follow-up consultation", responses=_problems(400, 404, 409, 413, 415, 422, 503))
    def start_followup(
        followup_id: Annotated[str, Path(min_length=1, max_length=100)], body: StartFollowupIn, response: Response,
        household: HouseholdDep, service: ServiceDep, key_name: KeyNameDep,
    ) -> dict[str, Any]:  # fmt: skip
        """Begin the follow-up consultation from the previous answers, what is still there and what is new; the course rules
        (e.g. a fever past 3 days) apply as danger signs. The follow-up is closed as done; the new consultation continues
        with the usual question and answer routes, and POST /v1/household/followups plans its own re-check."""
        start = household.begin_followup(followup_id, service.pack)
        news: dict[str, object] = {}
        if body.text:
            news.update(service.read_findings(body.text)[1])
        news.update(body.findings)
        c = household.followup_consultation(start, service.pack, body.still, news)
        loaded = service.adopt(c, key_name, start.member.id if start.member else None)
        household.close_done(start, loaded.id)
        response.headers["Location"] = f"/v1/consultations/{loaded.id}"
        return service.consultation_view(loaded)

    @r.post("/followups/{followup_id}/cancel", response_model=FollowupOut, summary="Cancel a follow-up", responses=_problems(404, 409, 503))
    def cancel_followup(followup_id: Annotated[str, Path(min_length=1, max_length=100)], household: HouseholdDep) -> Any:
        """Close an open follow-up without a consultation (the illness is over). Cancelling a cancelled one again
        returns it as it is; a follow-up already done gets 409."""
        return household.cancel_followup(followup_id).view()  # a done one is a SessionError: 409

    return r


def install(app: FastAPI, household: Household) -> None:
    """Serve the household routes on `app` over this record, with their errors as problem+json."""
    app.state.household = household
    app.include_router(router())
