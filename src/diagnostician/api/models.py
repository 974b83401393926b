"""Request and response models of the HTTP API: they validate input and are its documentation."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StringConstraints, field_validator, model_validator

from diagnostician.consult.service import MAX_QUESTIONS_LIMIT

# Field size limits: generous for real use, small enough that no request can make the server work hard.
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(strict=True, max_length=500)]

AnswerValue = Annotated[
    Union[StrictBool, StrictInt, StrictFloat, Text, Annotated[list[Text], Field(max_length=100)], None],
    Field(
        description=(
            "The answer. Yes/no questions: true or false. Scales: the number (or its string). "
            "Single-choice questions: a value code from `answers`. Multi-choice questions: a list of value codes "
            "([] for none). null: don't know. Typed text is also accepted as in the terminal "
            "('yes', 'no', '7', 'lower chest, upper chest', '?')."
        ),
        examples=[True, "7", ["V_101", "V_29"], None],
    ),
]
OutValue = Union[bool, str, list[str], None]
FindingType = Literal["binary", "categorical", "multi"]
TriageLevel = Literal["emergency", "urgent_24h", "see_doctor", "self_care"]

NOTICE_DESCRIPTION = "Decision support, not a diagnosis: when to seek care. Shown with every result."


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


# ---------------------------------------------------------------- errors


class ValidationIssue(BaseModel):
    """One problem with one field of a request."""

    loc: list[Union[str, int]] = Field(description="Where: 'body', 'query' or 'path', then the field path.")
    msg: str
    type: str


class Problem(BaseModel):
    """An error, as application/problem+json (RFC 9457)."""

    type: str = Field(description="A URI that identifies the kind of problem.", examples=["urn:diagnostician:problem:unknown-finding"])
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    errors: Optional[list[ValidationIssue]] = Field(default=None, description="Field by field, for validation problems.")


# ---------------------------------------------------------------- shared pieces


class PackRef(BaseModel):
    """The knowledge pack a result comes from."""

    name: str
    version: str


class RedFlagOut(BaseModel):
    """A danger sign that fired, with its advice (not yet clinically reviewed)."""

    id: str
    level: TriageLevel
    advice: str
    basis: str


class TriageDetail(BaseModel):
    """The triage level, its advice, and what drove it."""

    level: TriageLevel = Field(description="emergency, urgent_24h (see a doctor within 24 h), see_doctor or self_care.")
    advice: str
    red_flags: list[RedFlagOut] = Field(description="Danger signs present; each sets a floor nothing lowers.")
    reasons: list[str]


class TriageNow(TriageDetail):
    """Triage with the decision-support notice."""

    notice: str = Field(description=NOTICE_DESCRIPTION)


class TriageOut(TriageNow):
    """Triage of a consultation now."""

    consultation_id: str


class AnswerChoice(BaseModel):
    """One allowed answer of a question."""

    value: OutValue = Field(description="What to send as `value` (for multi-choice questions, a list of these).")
    label: str


class GivenAnswer(BaseModel):
    """An answer on record."""

    finding: str
    value: OutValue
    text: str = Field(description="The question and the answer in plain words.")
    initial: bool = Field(default=False, description="Given when the consultation was created, not asked.")


# ---------------------------------------------------------------- consultations


class CreateConsultation(_In):
    """A new consultation: demographics and what the patient comes with, as codes or in the patient's own words."""

    age: Optional[float] = Field(default=None, ge=0, le=120, strict=True, description="Age in years (0–120); may come from `text` instead.", examples=[54])  # strict: true is not an age
    sex: Optional[Annotated[str, StringConstraints(min_length=1, max_length=16)]] = Field(
        default=None, description="F or M ('female', 'male' are accepted too); may come from `text` instead.", examples=["M"]
    )
    text: Optional[Annotated[str, StringConstraints(max_length=5000)]] = Field(
        default=None,
        description="The patient's own description: findings read from it with confidence are entered (codes in `findings` win), "
        "doubtful ones are listed in `intake` and left for the questions; age and sex are taken from it when not given.",
        examples=["I'm a 54 year old man with chest pain and no fever"],
    )
    findings: dict[Code, AnswerValue] = Field(
        default_factory=dict,
        max_length=300,
        description="Initial findings as {finding code: value}, e.g. the main complaint {'E_53': true}.",
        examples=[{"E_53": True}],
    )
    max_questions: Optional[int] = Field(default=None, ge=1, le=MAX_QUESTIONS_LIMIT, description="Question budget (default 30).")
    member_id: Optional[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default=None,
        description="A member of the family record (/v1/household): age and sex default to the record's, the record's history "
        "items are asked first to confirm them, and the consultation is kept with the member's record.",
    )

    @model_validator(mode="after")
    def _demographics(self) -> "CreateConsultation":
        if self.text is None and self.member_id is None and (self.age is None or self.sex is None):
            raise ValueError("age and sex are required (or a text that says them, or a member_id)")
        return self


class MentionOut(BaseModel):
    """A finding read from free text."""

    code: str
    polarity: Literal["present", "absent", "uncertain"]
    value: OutValue
    confidence: float
    span: list[int] = Field(description="[start, end) character offsets in the text.")
    text: str
    method: str = Field(description="lexicon, fuzzy (a misspelling), number, embedding or llm.")
    entered: bool = Field(default=False, description="Entered as an initial finding (sure enough); else left for the questions.")


class ReadingOut(BaseModel):
    """What the free-text intake understood."""

    age: Optional[float]
    sex: Optional[Literal["F", "M"]]
    proxy: bool = Field(description="Someone writes about another person (a parent about a child).")
    relation: Optional[str]
    pregnant: Optional[bool]
    duration_days: Optional[float]
    temperature_c: Optional[float]
    findings: list[MentionOut]
    notes: list[str]


class ParseIn(_In):
    """Text to read."""

    text: Annotated[str, StringConstraints(min_length=1, max_length=5000)] = Field(examples=["no fever, but a bad cough since Monday"])


class ConsultationOut(BaseModel):
    """A consultation: demographics, answers so far, danger signs, and whether the inquiry is over."""

    id: str
    pack: PackRef
    created_at: str = Field(description="ISO 8601, UTC.")
    updated_at: str = Field(description="ISO 8601, UTC.")
    age: float
    sex: Literal["F", "M"]
    answers: list[GivenAnswer]
    questions_asked: int
    max_questions: int
    done: bool = Field(description="True when no question is left to ask.")
    stop_reason: Optional[str]
    red_flags: list[RedFlagOut] = Field(description="Danger signs present now: act on their advice at once.")
    notice: str = Field(description=NOTICE_DESCRIPTION)
    intake: Optional[ReadingOut] = Field(default=None, description="What was read from `text` when the consultation was created from it.")
    member_id: Optional[str] = Field(default=None, description="The member of the family record this consultation is about, if any.")


class Separation(BaseModel):
    """How often the asked finding is present with one leading condition."""

    condition: str
    p_present: float


class QuestionOut(BaseModel):
    """A question to put to the patient, how to answer it, and why it is asked."""

    id: str = Field(description="Send it back as `question_id` with the answer.", examples=["E_55@1"])
    finding: str = Field(description="The finding code the question asks about.")
    text: str = Field(description="The question in patient-facing words.")
    type: FindingType = Field(description="binary (yes/no), categorical (one value) or multi (several values).")
    scale: bool = Field(description="A categorical 0–10 style scale.")
    answers: list[AnswerChoice] = Field(description="Allowed values with their labels; null means don't know.")
    hint: str = Field(description="How to answer in typed text.")
    phase: Literal["record", "screening", "diagnostic", "review"]
    reason: str = Field(description="Why this question is asked, in plain words.")
    expected_gain_bits: float = Field(description="Expected information gain about the condition, in bits.")
    safety_gain_bits: float = Field(description="Expected information about whether the condition is dangerous, in bits.")
    p_present: float = Field(description="Predicted probability that the answer reports the finding present.")
    separates: list[Separation]


class NextQuestionOut(BaseModel):
    """The pending question, or done with the reason the inquiry ended."""

    consultation_id: str
    done: bool
    stop_reason: Optional[str]
    questions_asked: int
    question: Optional[QuestionOut]


class AnswerIn(_In):
    """The answer to the pending question."""

    question_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="The `id` of the question being answered.", examples=["E_55@1"]
    )
    value: AnswerValue


class AnswerOut(BaseModel):
    """An accepted answer: its canonical value, danger signs it raised, and triage now. Replayed as-is on a retry."""

    consultation_id: str
    question_id: str
    finding: str
    value: OutValue = Field(description="The answer as stored (value codes; null for don't know).")
    text: str
    new_red_flags: list[RedFlagOut] = Field(description="Danger signs this answer raised: show their advice at once.")
    triage: TriageNow
    questions_asked: int
    notice: str = Field(description=NOTICE_DESCRIPTION)


class UndoOut(BaseModel):
    """The answer taken back."""

    consultation_id: str
    undone: GivenAnswer
    questions_asked: int


class AuditEntryOut(BaseModel):
    """One decision: what was asked and answered (coded) or taken back, and the triage level after it."""

    time: Optional[str]
    action: Literal["answer", "undo"]
    finding: str = Field(description="The finding code of the question")
    triage_level: str
    pack_version: str
    key_name: Optional[str] = Field(description="The API key that made the request (null when keys are not required)")
    value: OutValue = Field(default=None, description="The coded answer (true/false, value codes, null = don't know); null for an undo. Never free text.")


class AuditOut(BaseModel):
    """The audit log of a consultation, oldest first."""

    consultation_id: str
    entries: list[AuditEntryOut]


class DifferentialEntryOut(BaseModel):
    """One condition of the differential."""

    code: str
    name: str
    icd10: str
    probability: float = Field(description="Probability from the differential model.")
    posterior: float = Field(description="Naive-Bayes posterior probability.")
    severity: int = Field(description="DDXPlus severity, 1 = most severe.")
    triage: TriageLevel = Field(description="How urgent care is if this is the condition.")
    role: Literal["likely", "consider"] = Field(description="likely: posterior ≥ 1 %; consider: listed to rule out.")


class EvidenceOut(BaseModel):
    """One answer's weight for or against a condition."""

    code: str
    text: str
    likelihood_ratio: float


class ExplanationOut(BaseModel):
    """The answers that most support and most oppose one condition."""

    condition: str
    supporting: list[EvidenceOut]
    opposing: list[EvidenceOut]
    text: str


class TestSuggestionOut(BaseModel):
    """An examination or test that bears on the differential."""

    id: str
    name: str
    kind: Literal["exam", "lab", "imaging", "procedure", "bedside"]
    mass: float = Field(description="Posterior probability of the listed conditions this test bears on.")
    new_mass: float = Field(description="Of that, the part no earlier suggestion covered.")
    conditions: list[tuple[str, float]] = Field(description="(condition, posterior probability), most likely first.")
    bits: Optional[float] = Field(default=None, description="Expected information a result would bring about the diagnosis (results with a published accuracy only).")
    result: Optional[str] = Field(default=None, description="The result finding to enter once the result is known (POST .../results).")


class TestsOut(BaseModel):
    """Suggested examinations and tests, and how they were ranked (said plainly)."""

    basis: str
    suggested: list[TestSuggestionOut]


class PlanOut(BaseModel):
    """The care plan that ends an assessment."""

    level: TriageLevel
    recheck_hours: Optional[int] = Field(description="Hours until a re-check; null for an emergency (act now).")
    text: str
    watch_for: list[str] = Field(description="Danger signs worth watching for, with their advice, most likely first.")
    change: list[str] = Field(description="What would change the advice (symptoms lasting too long, getting worse).")
    basis: str


class AssessmentOut(BaseModel):
    """The differential with probabilities and roles, triage, explanations, suggested tests and the notice."""

    consultation_id: str
    pack: PackRef
    done: bool = Field(description="Whether the inquiry is over; an assessment before that is provisional.")
    differential: list[DifferentialEntryOut] = Field(description="Most likely first.")
    triage: TriageDetail
    explanations: list[ExplanationOut]
    questions_asked: int
    stop_reason: str
    tests: TestsOut | None = Field(None, description="Examinations and tests that would help settle the differential (packs with test lists).")
    plan: PlanOut | None = Field(None, description="When to check again, danger signs to watch for, what would change the advice.")
    notice: str = Field(description=NOTICE_DESCRIPTION)


class ResultsIn(_In):
    """Examination and test results known after the inquiry: in words, or coded (result finding → true/false)."""

    text: Optional[Annotated[str, StringConstraints(max_length=5000)]] = Field(
        default=None, description="Results in words, e.g. 'troponin raised, chest X-ray normal'.", examples=["rapid strep test positive"]
    )
    results: dict[Code, Optional[StrictBool]] = Field(
        default_factory=dict, max_length=100, description="Coded results {result finding: true (positive/abnormal) | false | null}; see the assessment's suggested tests."
    )

    @model_validator(mode="after")
    def _something(self) -> "ResultsIn":
        if not self.text and not self.results:
            raise ValueError("give the results as text or as codes")
        return self


class ResultEnteredOut(BaseModel):
    """One result entered."""

    finding: str
    value: Optional[bool]
    text: str
    new_red_flags: list[RedFlagOut]


class ResultsEnteredOut(BaseModel):
    """The results entered, and those recorded without a likelihood to weigh them."""

    entered: list[ResultEnteredOut]
    uninterpreted: list[str] = Field(description="Reported tests the knowledge pack cannot interpret (recorded, not weighed).")


class AssessmentWithResultsOut(AssessmentOut):
    """The assessment after entering results, and what was entered."""

    results: ResultsEnteredOut


# ---------------------------------------------------------------- knowledge


class ConditionOut(BaseModel):
    """A condition of the knowledge pack."""

    code: str
    name: str
    icd10: str
    severity: int
    triage: TriageLevel


class FindingOut(BaseModel):
    """A finding of the knowledge pack: its question, type and allowed answers."""

    code: str
    type: FindingType
    scale: bool
    text: str
    answers: list[AnswerChoice]
    default: Optional[str]
    antecedent: bool
    parent: Optional[str]


class ConditionList(BaseModel):
    """Conditions matching a search."""

    pack: PackRef
    total: int = Field(description="Matches in all; `items` holds at most `limit` of them.")
    items: list[ConditionOut]


class FindingList(BaseModel):
    """Findings matching a search."""

    pack: PackRef
    total: int = Field(description="Matches in all; `items` holds at most `limit` of them.")
    items: list[FindingOut]


class Health(BaseModel):
    """The service is up and which pack it serves."""

    status: Literal["ok"]
    version: str
    pack: PackRef


# ---------------------------------------------------------------- chat (OpenAI-compatible)

MAX_CHAT_MESSAGES = 1000  # a whole consultation with every re-ask and undo is well under 200
MAX_CHAT_TEXT = 100_000  # per message; the request body limit is the tighter bound in practice
ChatText = Annotated[str, StringConstraints(strict=True, max_length=MAX_CHAT_TEXT)]


class _OpenAIIn(BaseModel):
    # OpenAI clients send many optional fields (temperature, top_p, tools, user, …): accepted and ignored.
    model_config = ConfigDict(extra="ignore")


class ChatTextPart(_OpenAIIn):
    """A text part of a message's content (the array form of content); other part types are refused."""

    type: Literal["text"]
    text: ChatText


class ChatMessageIn(_OpenAIIn):
    """One message of the chat history. System and developer messages are accepted and ignored."""

    role: Literal["system", "developer", "user", "assistant"]
    content: Union[ChatText, Annotated[list[ChatTextPart], Field(max_length=100)], None] = Field(
        default=None, description="The text, or an array of text parts. Required for user messages."
    )

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        # A clear message instead of one error per member of the union.
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValueError("content must be text: a string or an array of text parts")
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ValueError("only text parts are supported (no images, audio or files)")
        return value

    @model_validator(mode="after")
    def _user_has_content(self) -> "ChatMessageIn":
        if self.role == "user" and self.content is None:
            raise ValueError("a user message needs content (text)")
        return self

    @property
    def text(self) -> str:
        """The message's text (text parts joined by newlines; '' for no content)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content)


class ChatStreamOptions(_OpenAIIn):
    """Streaming options: include_usage adds a last chunk with the usage."""

    include_usage: Optional[StrictBool] = None


class ChatCompletionRequest(_OpenAIIn):
    """A chat completion request in the OpenAI format. Sampling parameters (temperature, top_p, max_tokens, seed, …)
    are accepted and ignored: the replies are deterministic and never cut short."""

    model: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=100)] = Field(
        description="The model id: `diagnostician`.", examples=["diagnostician"]
    )
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=MAX_CHAT_MESSAGES)] = Field(
        description="The whole chat history, oldest first; the last message must come from the user."
    )
    stream: Optional[StrictBool] = Field(default=False, description="Send the reply as server-sent events (`data: {chunk}` … `data: [DONE]`).")
    stream_options: Optional[ChatStreamOptions] = None
    n: Optional[StrictInt] = Field(default=None, description="Number of replies: only 1 (or absent) is supported.")

    @model_validator(mode="after")
    def _ends_with_user(self) -> "ChatCompletionRequest":
        if self.messages and self.messages[-1].role != "user":
            raise ValueError("the last message must come from the user")
        return self


class ChatMessageOut(BaseModel):
    """The assistant's reply."""

    role: Literal["assistant"]
    content: str
    refusal: None = None


class ChatChoice(BaseModel):
    """The one reply."""

    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop"]
    logprobs: None = None


class ChatUsage(BaseModel):
    """Always zero: no language model runs, so there are no tokens to count (present because clients expect it)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A chat completion in the OpenAI format."""

    id: str
    object: Literal["chat.completion"]
    created: int = Field(description="Unix time of the reply.")
    model: str
    system_fingerprint: str = Field(description="The knowledge pack that answered: name-version.")
    choices: list[ChatChoice]
    usage: ChatUsage


class ModelOut(BaseModel):
    """A model in the OpenAI format."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """The models this server offers: only `diagnostician`."""

    object: Literal["list"]
    data: list[ModelOut]
