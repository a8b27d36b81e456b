"""p(z) as Gaussian mixtures (E20 Sec. 2.3): the distribution, its products (mode, quantiles,
ODDS, PIT) and the photo-z quality metrics."""
