"""Patient simulators: answer an agent's questions from a case record."""

from __future__ import annotations

from dataclasses import dataclass

from diagnostician.engine.posterior import AnswerValue
from diagnostician.knowledge.ddxplus import PatientRecord
from diagnostician.knowledge.schema import BINARY, Pack


@dataclass
class DDXPlusPatient:
    """The DDXPlus protocol: a question on an evidence reveals the patient's whole answer to it.

    Binary evidences not in the record are absent; categorical and multi-choice ones not in the
    record take their default value ("nowhere", "NA", 0).
    """

    pack: Pack
    record: PatientRecord

    def answer(self, code: str) -> AnswerValue:
        """The patient's answer to the question on this finding."""
        f = self.pack.finding(code)
        v = self.record.evidences.get(code)
        if v is None:
            return f.absent_value()
        return True if f.kind == BINARY else v

    def opening(self) -> dict[str, AnswerValue]:
        """What the patient says first: the initial evidence."""
        return {self.record.initial_evidence: self.answer(self.record.initial_evidence)}

    def everything(self) -> dict[str, AnswerValue]:
        """Every finding's answer, for the all-evidence-known ceiling."""
        return {f.code: self.answer(f.code) for f in self.pack.findings}
