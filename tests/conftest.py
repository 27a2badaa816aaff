import os

import pytest
import torch

# Two cores in CI: keep torch from oversubscribing them.
torch.set_num_threads(int(os.environ.get("DISCO_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def estimator():
    import disco_plug

    return disco_plug.load()


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)
