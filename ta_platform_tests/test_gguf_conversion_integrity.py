"""A corrupt model conversion folder (the safetensors converted from the GGUF): detected, named, rebuilt.

Faults planted in a real copy of the converted SmolLM2 folder: one flipped bit in the weights (same
size: only a hash sees it) and a truncated config. The folder must never be loaded as it is: the reason
names the file, and ``ensure_converted`` converts again into a folder whose files match their record.
"""

from __future__ import annotations

import os
import shutil

import pytest

from ta_platform.common.hashing import sha256_file
from ta_platform.extraction.gguf_package import (
    CONVERSION_FILE,
    WEIGHTS_FILE,
    converted_folder,
    ensure_converted,
    read_conversion_record,
    stale_reason,
)
from ta_platform_tests.real_model import first_conversion, real_model_spec, shared_model_cache

pytestmark = [pytest.mark.slow, pytest.mark.fault]


@pytest.fixture
def copied(tmp_path):
    """A model cache holding a byte copy (not hard links: bytes are edited in place here) of the conversion."""
    spec = real_model_spec()
    source = converted_folder(shared_model_cache(), str(spec.package), str(spec.gguf_file))
    cache = tmp_path / "models"
    target = converted_folder(cache, str(spec.package), str(spec.gguf_file))
    shutil.copytree(source, target)
    return cache, target


def flip_a_bit(path):
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))


def test_the_record_holds_every_files_sha256(copied):
    _, folder = copied
    record = read_conversion_record(folder)
    assert set(record["sha256"]) == set(record["files"]) and WEIGHTS_FILE in record["sha256"]
    assert record["sha256"]["config.json"] == sha256_file(folder / "config.json")
    assert stale_reason(folder, first_conversion().gguf_sha256) is None


def test_a_truncated_file_is_named_by_its_size(copied):
    _, folder = copied
    config = folder / "config.json"
    os.truncate(config, config.stat().st_size // 2)
    reason = stale_reason(folder, first_conversion().gguf_sha256)
    assert reason is not None and str(config) in reason and "wrong size" in reason


def test_a_flipped_bit_in_the_weights_is_detected_and_the_folder_rebuilt(copied):
    cache, folder = copied
    spec = real_model_spec()
    weights = folder / WEIGHTS_FILE
    size = weights.stat().st_size
    flip_a_bit(weights)
    assert weights.stat().st_size == size  # the size check alone cannot see it
    reason = stale_reason(folder, first_conversion().gguf_sha256)
    assert reason is not None and str(weights) in reason and "sha256" in reason
    rebuilt = ensure_converted(str(spec.package), str(spec.gguf_file), cache)
    assert rebuilt.converted and str(weights) in rebuilt.reason
    record = read_conversion_record(folder)
    assert sha256_file(folder / WEIGHTS_FILE) == record["sha256"][WEIGHTS_FILE] == \
        read_conversion_record(first_conversion().folder)["sha256"][WEIGHTS_FILE]
    assert (folder / CONVERSION_FILE).is_file()
    assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert ensure_converted(str(spec.package), str(spec.gguf_file), cache).reason == "cached"
