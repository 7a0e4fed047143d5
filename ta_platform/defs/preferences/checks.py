"""Preference study checks."""
