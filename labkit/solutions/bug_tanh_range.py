import torch


def predict_proba(logits: torch.Tensor) -> torch.Tensor:
    """Probability of class 1 for each logit of a model trained with BCEWithLogitsLoss."""
    # BCEWithLogitsLoss applies the sigmoid, whose outputs lie in (0, 1); tanh's lie in (-1, 1)
    return torch.sigmoid(logits)


def predict(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Label 0 or 1 for each logit: 1 where the probability of class 1 reaches the threshold."""
    return (predict_proba(logits) >= threshold).long()
