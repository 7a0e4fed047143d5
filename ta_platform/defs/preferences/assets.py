"""Preference study assets (wired in a later step)."""
