"""The function-tag study: a sentence-level probe of the dataset's own function tags (see study.py)."""
