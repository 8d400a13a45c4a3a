"""Hidden tests for rnn_classifier: sequences of other lengths, and all-padding rows."""
import torch


def test_hidden_other_lengths_and_padding(sub):
    """ids of length 5 and 40 give (B, 2) logits; a row of padding only gives finite logits"""
    torch.manual_seed(0)
    model = sub.build_model(50, 0).eval()
    with torch.no_grad():
        for shape in ((3, 5), (2, 40)):
            out = model(torch.randint(1, 50, shape))
            assert tuple(out.shape) == (shape[0], 2), f"ids of shape {shape} gave logits {tuple(out.shape)}"
        out = model(torch.zeros(2, 16, dtype=torch.long))
    assert torch.isfinite(out).all(), "a sentence of padding only gave non-finite logits"


TESTS = (test_hidden_other_lengths_and_padding,)
