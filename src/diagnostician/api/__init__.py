"""HTTP API (FastAPI): consultations, next question, answers, assessment, triage and pack search under /v1."""

from diagnostician.api.app import create_app, create_app_from_env
from diagnostician.api.settings import Settings

__all__ = ["Settings", "create_app", "create_app_from_env"]
