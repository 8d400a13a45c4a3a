"""Hidden tests for bug_to_json: a CNN with batch norm, and a version mismatch."""
import torch
from torch import nn

from labkit.exercises.bug_to_json import KEY


def _cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    net.train()
    net(torch.randn(16, 1, 8, 8))
    return net.eval()


def test_hidden_cnn_round_trip_and_version_bound(sub):
    """a small CNN (conv + batch norm) round-trips; the same file opened as version 2 is refused"""
    original = _cnn(0)
    blob = sub.encrypt_model(original, KEY, "digits-cnn", "1")
    restored = sub.decrypt_model(blob, KEY, "digits-cnn", "1", _cnn(1))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(restored.eval()(x), original(x)), "the restored CNN answers differently"
    assert int(restored[1].num_batches_tracked) == int(original[1].num_batches_tracked), "buffers were not restored"
    try:
        sub.decrypt_model(blob, KEY, "digits-cnn", "2", _cnn(1))
    except Exception:  # noqa: BLE001
        return
    raise AssertionError("a version-1 file was accepted as version 2: keep name:version as associated data")


TESTS = (test_hidden_cnn_round_trip_and_version_bound,)
