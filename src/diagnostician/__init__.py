"""diagnostician: an open, evidence-based clinical inquiry engine (decision support, not a diagnosis)."""

__version__ = "0.1.0"
