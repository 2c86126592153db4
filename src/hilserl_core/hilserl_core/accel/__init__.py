"""Speed only: native kernels, the int8 operator build, fused image heads and the matrix-product
precision. Each fast path can be turned off and is tested against the plain one.
"""
