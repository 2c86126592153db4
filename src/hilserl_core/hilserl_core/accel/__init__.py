"""Speed only: native kernels, the int8 operator build, fused image heads, the faster paths of
the spatial embedding and of the encoder's norms and convolutions, and the matrix-product
precision. ``paths.py`` is the one place that chooses which fast path a network runs (the
networks in ``rl/`` and ``vision/`` take them as constructor arguments); each can be turned off
and is tested against the plain one.
"""
