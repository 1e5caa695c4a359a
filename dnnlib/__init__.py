"""Small utilities shared by every package (the name is kept from StyleGAN2-ADA for pickle compatibility)."""
from .util import EasyDict, UserError  # noqa: F401
