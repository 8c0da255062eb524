"""The core every chapter uses: the BN transform, data, models, the training loop, probes."""
