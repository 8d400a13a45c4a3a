import numpy as np
import torch


def integrated_gradients(model, x, baseline, target, n_steps):
    x, baseline = torch.as_tensor(x).float(), torch.as_tensor(baseline).float()
    total = torch.zeros_like(x)
    index = torch.as_tensor(target).long().view(-1, 1)
    for k in range(1, n_steps + 1):
        point = (baseline + k / n_steps * (x - baseline)).detach().requires_grad_(True)
        score = model(point).gather(1, index).sum()   # each input's target logit; the sum keeps them apart
        total += torch.autograd.grad(score, point)[0]
    return (x - baseline) * total / n_steps


def permutation_importance(predict, X, y, n_repeats, seed):
    X, y = np.asarray(X), np.asarray(y)
    rng = np.random.default_rng(seed)
    base = np.mean(predict(X) == y)
    drops = np.zeros(X.shape[1])
    for j in range(X.shape[1]):
        for _ in range(n_repeats):
            shuffled = X.copy()
            shuffled[:, j] = shuffled[rng.permutation(len(X)), j]
            drops[j] += base - np.mean(predict(shuffled) == y)
    return drops / n_repeats
