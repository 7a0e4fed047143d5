"""One intra-op torch thread for tests that compare activations bit for bit.

Why: identical bits between runs need one reduction order, and on a shared 2-core machine two
spinning OpenMP threads collapse under load. Import ``one_thread`` into a test module to apply it.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
