"""InfinityGAN."""
