"""Fixtures of the integration tests: the bundled estimator fitted on 2048 draws of the oracle mixture."""

import pytest
import torch
from integration_oracle import TARGET


@pytest.fixture(scope="session")
def fitted(estimator):
    """The bundled estimator on 2048 samples of TARGET (float32, as a user would pass them)."""
    return estimator.fit(TARGET.sample(2048, generator=torch.Generator().manual_seed(11))[0].float())
