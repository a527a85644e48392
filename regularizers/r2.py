"""R2 (Mescheder et al. 2018): R1's penalty on the generated batch, gamma / 2 * E_fake ||grad_x D(x)||^2."""
from regularizers.r1 import R1


class R2(R1):
    name = "r2"
    on_real = False
