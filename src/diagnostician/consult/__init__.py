"""Consultation sessions over the engine."""

from diagnostician.consult.session import Consultation, TurnResult

__all__ = ["Consultation", "TurnResult"]
