"""Study orchestration in plain Python: iterate slices, call the science, write artifacts.

Dagster assets call these functions; tests call them directly.
"""
