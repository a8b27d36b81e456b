"""Spectral energy distributions: filter bands, SSP grids, synthetic photometry, star-formation
histories and dust, and the template sets of the template fit."""
