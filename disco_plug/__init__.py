"""disco_plug: a pretrained DiScoFormer (arXiv 2511.05924) density-and-score estimator as a plug-in
score for samplers: fit a sample set once, query log p and grad log p anywhere.

>>> import disco_plug, numpy as np
>>> fitted = disco_plug.load().fit(np.random.default_rng(0).normal(size=(512, 2)))
>>> fitted.log_density(np.zeros(2)).shape
()
"""

from .columns import DegenerateSamplesWarning, GridValuedColumnsWarning
from .config import ModelConfig
from .bounded import BoundedFit
from .estimator import Estimator, FittedEstimator, load
from .gmm import GaussianMixture, random_gmm
from .densities.kde import GaussianKDE
from .blend.gated import GatedBlend
from .model import DiScoFormer

__version__ = "0.1.0"
__all__ = ["load", "Estimator", "FittedEstimator", "BoundedFit", "ModelConfig", "DiScoFormer", "GatedBlend", "GaussianMixture",
           "random_gmm", "GaussianKDE", "DegenerateSamplesWarning", "GridValuedColumnsWarning", "__version__"]
