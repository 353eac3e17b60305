"""Generative adversarial networks (issue 7): losses, architectures, training, offline metrics.

The game is Goodfellow et al. 2014's ``min_G max_D V(D, G)``; every variant here is an option
of the same pieces: a generator/discriminator pair from :mod:`advml.generative.nets`, a loss,
and the one trainer of :mod:`advml.training`.
"""
