"""The one report a researcher opens: ``storage/reports/index.html`` (html.py renders, collect.py gathers)."""
