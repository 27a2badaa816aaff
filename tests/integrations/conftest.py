"""Fixtures of the integration tests: the bundled estimator fitted on 2048 draws of the oracle mixture."""

import pytest
import torch
from integration_oracle import TARGET


@pytest.fixture(scope="session")
def fitted(estimator):
    """The bundled estimator on 2048 samples of TARGET (float32, as a user would pass them)."""
    return estimator.fit(TARGET.sample(2048, generator=torch.Generator().manual_seed(11))[0].float())


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The adapters evaluate a few points per call, where a second intra-op thread only adds
    synchronization: on a busy 2-core machine the diffusers tests ran 15x slower with 2 threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
