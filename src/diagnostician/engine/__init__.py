"""Engine: pure functions over a Pack and a State (posterior, question choice, stopping, triage, explanation)."""

from diagnostician.engine.assess import NOTICE, Assessment, DifferentialEntry, assess
from diagnostician.engine.inquiry import InquiryPolicy, Question, next_question, should_stop
from diagnostician.engine.posterior import Answer, State, posterior, start, update
from diagnostician.engine.triage import TriagePolicy, TriageResult, fired_red_flags, triage

__all__ = [
    "NOTICE",
    "Answer",
    "Assessment",
    "DifferentialEntry",
    "InquiryPolicy",
    "Question",
    "State",
    "TriagePolicy",
    "TriageResult",
    "assess",
    "fired_red_flags",
    "next_question",
    "posterior",
    "should_stop",
    "start",
    "triage",
    "update",
]
