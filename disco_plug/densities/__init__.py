"""Density objects: every estimate and test density answers log_density_and_score, convolve and sample.

`Gaussian` (the whitened Gaussian fit), `KernelDensity` (a Gaussian KDE of a context), `ClusterKernelDensity`
(a KDE whose kernels are shaped like their point's cluster), `MixtureDensity` (a fitted Gaussian / Student-t
mixture) and `StackedDensity` (their weighted mixture: the shipped estimate); see base.py for the protocol.
"""

from .base import Density
from .cluster_kde import ClusterKernelDensity
from .gaussian import Gaussian
from .kde import KernelDensity
from .mixture import Mixture, MixtureDensity
from .stacked import StackedDensity

__all__ = ["ClusterKernelDensity", "Density", "Gaussian", "KernelDensity", "Mixture", "MixtureDensity",
           "StackedDensity"]
