"""Hidden tests for anomaly_detection: longer series, ten faults, traffic ten times higher and half as high."""
from labkit.exercises.anomaly_detection import check_f1, prepare


def test_hidden_other_seeds_and_traffic(sub):
    """F1 >= 0.8 on three unseen 900 s series at x1, x10 and x0.5 traffic"""
    prepare()
    for name in ("hidden seed 20, traffic x1", "hidden seed 21, traffic x10", "hidden seed 22, traffic x0.5"):
        check_f1(sub, name)


TESTS = (test_hidden_other_seeds_and_traffic,)
