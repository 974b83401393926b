"""Dialogue: turning people's answers into findings and findings into questions."""
