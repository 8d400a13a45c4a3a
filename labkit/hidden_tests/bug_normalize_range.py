"""Hidden tests for bug_normalize_range: negative inputs and an outlier."""
import torch


def test_hidden_negative_values_and_an_outlier(sub):
    """values in -5..3 with one outlier at 40: still exactly -1 at the min and +1 at the max"""
    g = torch.Generator().manual_seed(3)
    X = torch.rand(3, 2, 6, 6, generator=g) * 8 - 5
    X[0, 0, 0, 0] = 40.0
    out = sub.to_minus_one_one(X)
    assert out.shape == X.shape, f"shape changed to {tuple(out.shape)}"
    assert torch.isclose(out.min(), torch.tensor(-1.0), atol=1e-6) and torch.isclose(out.max(), torch.tensor(1.0),
                                                                                     atol=1e-6), (
        f"range [{out.min().item():.3f}, {out.max().item():.3f}], expected exactly [-1, 1]")


TESTS = (test_hidden_negative_values_and_an_outlier,)
