"""Training (E20 Sec. 2.4, 3, 5): configurations and presets, the generic epoch loop with phases and
checkpoints, batches, randomized coadds, repetitions x folds, the pretraining cache, the classifier."""
