"""Inference: ensemble p(z) products for a catalogue, streamed prediction of survey-size files and
its Dask scale-out."""
