"""Hidden tests for inference_module: a batch of one long sentence full of unknown words."""
import torch

from labkit.exercises.inference_module import MAX_LEN, _setup


def test_hidden_single_long_unknown_sentence(sub):
    """one 40-word sentence of mostly unknown words: (1,) labels, (1, 2) probabilities, equal to the reference"""
    service, reference, vocab, _ = _setup(sub)
    text = " ".join(["zebra", "good", "quantum", "the"] * 10)
    labels, probs = service.predict([text])
    with torch.no_grad():
        want = reference(vocab.encode_batch([text], MAX_LEN)).softmax(dim=1)  # (1, 2)
    assert tuple(labels.shape) == (1,) and tuple(probs.shape) == (1, 2), (
        f"shapes {tuple(labels.shape)} and {tuple(probs.shape)} for one sentence; expected (1,) and (1, 2)")
    assert torch.allclose(probs.float(), want, atol=1e-5), "probabilities differ from the reference for one sentence"


TESTS = (test_hidden_single_long_unknown_sentence,)
