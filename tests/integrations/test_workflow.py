"""The two-stage breast-cancer logistic regression (integrations/workflow.py) with the bundled estimator.

Pass criterion (stated): averaged over the coefficients, the stage-2 posterior sds are within
SD_SLACK = 0.15 (relative) plus 4 Monte Carlo standard errors of exact NUTS on all the data, and each
posterior mean is within MEAN_SLACK = 0.3 exact sds plus 4 standard errors. Forgetting stage 1 (a flat
prior on half the data) would inflate the sds by about sqrt(2) - 1 = 0.41, which this rejects.
"""

import doctest

import pytest
import torch

pytest.importorskip("pyro")
pytest.importorskip("sklearn")
import disco_plug.integrations.workflow as workflow  # noqa: E402

SD_SLACK, MEAN_SLACK = 0.15, 0.3


def test_docstring_examples():
    assert doctest.testmod(workflow).failed == 0


def test_unknown_feature_is_named():
    with pytest.raises(ValueError, match="unknown features"):
        workflow.breast_cancer(("mean radius", "colour"))


def test_two_stage_matches_exact_nuts(estimator):
    result = workflow.two_stage(estimator.fit, stage1_samples=400, num_samples=200, warmup_steps=120)
    k = len(result.names)
    sd_tol = SD_SLACK + 4 * result.sd_noise.pow(2).sum().sqrt() / k
    assert float(result.sd_gap.mean().abs()) < sd_tol, (result.sd_gap, sd_tol)
    mean_tol = MEAN_SLACK + 4 * result.mean_noise
    assert bool((result.mean_gap.abs() < mean_tol).all()), (result.mean_gap, mean_tol)
    assert torch.all(result.exact_ess > 50), result.exact_ess
