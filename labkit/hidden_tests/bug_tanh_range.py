"""Hidden tests for bug_tanh_range: a batch of shape (B, 1) and a stricter threshold."""
import torch


def test_hidden_column_of_logits_and_threshold(sub):
    """(B, 1) logits give sigmoid probabilities of the same shape; threshold 0.8 needs logit >= log 4"""
    logits = torch.tensor([[-3.0], [-0.1], [0.0], [1.0], [1.5], [3.0]])
    p = sub.predict_proba(logits)
    assert p.shape == logits.shape and torch.allclose(p, torch.sigmoid(logits), atol=1e-6), (
        f"probabilities {p.flatten().tolist()}, expected the sigmoid of the logits")
    labels = sub.predict(logits, threshold=0.8)
    assert labels.flatten().tolist() == [0, 0, 0, 0, 1, 1], f"threshold 0.8 gave {labels.flatten().tolist()}"


TESTS = (test_hidden_column_of_logits_and_threshold,)
