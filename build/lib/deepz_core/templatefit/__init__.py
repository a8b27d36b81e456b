"""The BCNZ2-like template fit (E20 App. A): configuration, input calibration, chi2(z), NNLS and
its p(z) products."""
