"""The network combined with the template fit (beyond E20, issue 22 part 2).

A run's networks and a template fit of the same catalogue give two p(z) per galaxy; ``combine``
pools them on the p(z) grid as p_net^a p_tf^b with exponents per half magnitude fitted on the
out-of-fold training galaxies (``pz.pooling``), then calibrates the pooled PIT (``pz.calibration``).
``runs`` fits that for a finished run (``hybrid.json`` + ``hybrid_predictions.fits`` in the run
folder) and predicts catalogues with it; the network alone stays the run's fast path.
"""
