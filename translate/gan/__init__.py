"""The unconditional and class-conditional GAN family's building blocks.

``networks``: the DCGAN and MLP generators and discriminators, the small classifier, latent and
label sampling, EMA. ``data``: the 2-D mixtures (ring8, grid25), the digits set and image
folders as GAN training data, and the mixture mode statistics. ``metrics``: FID / KID in a
chosen feature network, class histograms. The trainer is ``training.gan``.
"""
