"""GAN-GP (SN paper, Sec. 4): the WGAN-GP penalty with the standard (non-saturating) loss."""
from regularizers.wgan_gp import WGANGP


class GANGP(WGANGP):
    name = "gangp"
    default_loss = "ns"
