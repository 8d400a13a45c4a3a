import torch


def evaluate_and_report(model, X, y):
    """Print and return the accuracy of `model` on the held-out set (X, y)."""
    model.eval()
    with torch.no_grad():
        y_hat = model(X).argmax(dim=1)  # (N,)
    n = len(y)
    correct = int((y_hat == y).sum())
    accuracy = correct / n  # measured in this run, never assumed
    print(f"Held-out accuracy: {accuracy:.1%} ({correct}/{n} samples)")
    return {"accuracy": accuracy, "n": n}
