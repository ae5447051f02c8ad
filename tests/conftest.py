import os

import pytest
import torch

# Tests run on 2-core machines: keep torch from oversubscribing and make runs repeatable.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
