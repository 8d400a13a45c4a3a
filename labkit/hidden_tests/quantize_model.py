"""Hidden tests for quantize_model: the INT8 model agrees with fp32 on fresh inputs of another batch size."""
import torch

from labkit.exercises.quantize_model import _data, _run


def test_hidden_agrees_with_fp32_on_fresh_inputs(sub):
    """on 300 fresh inputs in batches of 17 the INT8 model picks the fp32 class at least 95% of the time"""
    model, _, report = _run(sub)
    X, _ = _data(300, seed=11)
    with torch.no_grad():
        fp32 = model(X).argmax(dim=1)
        int8 = torch.cat([report["model"](chunk) for chunk in X.split(17)]).argmax(dim=1)
    agree = (fp32 == int8).float().mean().item()
    assert agree >= 0.95, f"INT8 and fp32 agree on {agree:.0%} of fresh inputs"


TESTS = (test_hidden_agrees_with_fp32_on_fresh_inputs,)
