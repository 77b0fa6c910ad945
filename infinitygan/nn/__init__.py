"""Building blocks: equalized layers, modulated convolutions, blur, noise.

Every op is plain PyTorch (no compiled extensions) so it runs on CPU, CUDA and MPS in
float32, bfloat16 and float16.
"""
from .layers import (
    EqualConv2d,
    EqualLinear,
    FusedLeakyReLU,
    NoiseInjection,
    PixelNorm,
    center_crop,
    fused_leaky_relu,
)
from .modulated import ModulatedConv2d, ToRGB, blur_kernel_121, upsample_rgb

__all__ = [
    "EqualConv2d",
    "EqualLinear",
    "FusedLeakyReLU",
    "ModulatedConv2d",
    "NoiseInjection",
    "PixelNorm",
    "ToRGB",
    "blur_kernel_121",
    "center_crop",
    "fused_leaky_relu",
    "upsample_rgb",
]
