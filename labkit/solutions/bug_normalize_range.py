import torch


def to_minus_one_one(images: torch.Tensor) -> torch.Tensor:
    """Rescale images linearly so the batch minimum becomes -1 and the maximum +1."""
    # standardizing gives mean 0 and std 1, not a fixed range; min-max scaling fixes both ends
    x_min, x_max = images.min(), images.max()
    unit = (images - x_min) / (x_max - x_min)  # [0, 1]: exactly 0 at the min, 1 at the max
    return unit * 2 - 1  # (N, C, H, W) in [-1, 1]
