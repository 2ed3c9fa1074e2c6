"""profiles: what the hardware costs.

Device profiles as data (A11-A17 Pro, M1-M4, plus a measured ``host``), ``estimate(model, input_shape,
device)`` -> ``Cost`` for any torch CNN built from standard layers, measurement and calibration.
Imports nothing of ``compress``, ``search`` or ``reports``.
"""
