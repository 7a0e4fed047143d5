"""Storage every study shares: the DuckDB metadata store, its declared table schemas, artifact paths.

Why a package of its own: activations, probes, preferences and the gate all read and write the
same store, so it cannot belong to one study (it used to live in ``anchors/``).
"""
