"""Storage dtypes of activation partitions: float32, or bfloat16 kept as raw 16-bit words.

Why bfloat16 and not float16: float16's largest finite value is 65504, and Qwen2-family residual
streams carry outlier features of 1e4-1e5, which float16 turns into inf (a NaN-poisoned probe, or a
silently clipped one). bfloat16 keeps float32's 8-bit exponent (largest finite ~3.4e38) and drops the
mantissa to 7 bits: a relative rounding error of at most 2**-9 (0.2 %) per value, half the disk and
page cache of float32. float16 stays refused: it would need a recorded, checked per-partition scale,
which the store does not implement.

numpy has no bfloat16 type, so a bfloat16 value is stored as the upper 16 bits of the float32 with
the same value (little-endian ``uint16``), rounded to nearest, ties to even (what
``torch.Tensor.to(torch.bfloat16)`` does); decoding shifts the word back into a float32, exactly.
Pure numpy on purpose: the store is imported by the Dagster code location, which never loads torch.
"""

from __future__ import annotations

import numpy as np

STORAGE_DTYPES = ("float32", "bfloat16")
DEFAULT_STORAGE_DTYPE = "float32"
# The on-disk word of each storage dtype (explicitly little-endian: files move between machines).
WORD_DTYPES = {"float32": np.dtype("<f4"), "bfloat16": np.dtype("<u2")}


def check_storage_dtype(name: object, where: str = "storage dtype") -> str:
    """``name`` if it is a storage dtype; else a ``ValueError`` naming ``where`` and why float16 is refused."""
    if name not in STORAGE_DTYPES:
        extra = (" (float16 overflows on Qwen2 activations, whose outliers reach 1e5 > 65504, and no "
                 "recorded scale is supported; use bfloat16)" if name == "float16" else "")
        raise ValueError(f"{where}: storage dtype {name!r} refused: use one of {STORAGE_DTYPES}{extra}")
    return str(name)


def word_dtype(name: str) -> np.dtype:
    """The numpy dtype of one stored value (``<f4`` or ``<u2``)."""
    return WORD_DTYPES[check_storage_dtype(name)]


def encode(rows: np.ndarray, name: str) -> np.ndarray:
    """Float rows -> C-contiguous words of storage dtype ``name`` (float16 input is refused).

    Memory: one float32 copy of ``rows`` (when not float32 already) plus, for bfloat16, two uint32
    temporaries of the same size: callers pass one trace (or one block) at a time.
    """
    rows = np.asarray(rows)
    if rows.dtype == np.float16:
        raise ValueError("float16 rows refused: they may already hold inf where a Qwen2 outlier overflowed; "
                         "pass float32 (or bfloat16 compute upcast to float32)")
    values = np.ascontiguousarray(rows, dtype=np.float32)
    if check_storage_dtype(name) == "float32":
        return values.astype(WORD_DTYPES["float32"], copy=False)
    bits = values.view(np.uint32)
    # Round to nearest, ties to even: add 0x7FFF plus the lowest kept bit, then keep the upper half.
    # Finite values cannot wrap (the largest, 0xFF7FFFFF, + 0x8000 stays below 2**32); NaNs can, so
    # they are set afterwards to a quiet NaN of the same sign.
    words = ((bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)).astype(
        WORD_DTYPES["bfloat16"])
    nan = np.isnan(values)
    if nan.any():
        words[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return words


def decode(words: np.ndarray, name: str) -> np.ndarray:
    """Stored words -> float32 (a view when the storage is float32 and already native, else a new array)."""
    if check_storage_dtype(name) == "float32":
        return np.asarray(words, dtype=np.float32)
    return (np.asarray(words, dtype=np.uint32) << np.uint32(16)).view(np.float32)
