"""Hidden tests for bug_ptq_retraining: calibration on unlabelled traffic."""
import torch

from labkit.exercises.bug_ptq_retraining import CLASSES, _data, _loader, _trained_model


def test_hidden_calibrates_on_unlabelled_batches(sub):
    """a loader of (inputs, None) batches, as production traffic is: INT8 model, weights of the fp32 one unchanged"""
    model = _trained_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = sub.post_training_quantize(model, [(X, None) for X, _ in _loader(seed=5)])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "the fp32 model changed"
    with torch.no_grad():
        assert tuple(quantized(_data(5, seed=6)[0]).shape) == (5, CLASSES)


TESTS = (test_hidden_calibrates_on_unlabelled_batches,)
