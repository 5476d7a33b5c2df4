"""Regressor networks, their checkpoints, synthetic training data, loss and training loop.

Named like EG3D's own ``training`` package, but always imported as
``eg3d_regressor_plugin.training``, so the two never shadow each other.
"""
