"""Exercise ddp_training is graded on two real ranks: training without synchronization fails the tests aimed at it.

(test_grading.py grades its reference at 100% and stub at 0, visible and hidden; each run is two processes.)"""
from labkit import grading

EX = grading.get_exercise("ddp_training")
REFERENCE = EX.reference_source()


def test_training_without_synchronization_fails_the_sync_tests():
    """each rank trains on its own half alone: broadcast and averaging skipped, so ranks differ"""
    lazy = REFERENCE.replace("        average_gradients(model)\n", "").replace(
        "    broadcast_parameters(model, src=0)\n    for x", "    for x")
    lazy = lazy.replace("            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)\n", "")
    report = grading.grade_source(EX, lazy)
    by_name = {r.name: r for r in report.results}
    assert by_name["test_shards_disjoint_and_complete"].passed and by_name["test_broadcast_parameters"].passed
    assert not by_name["test_average_gradients"].passed, report.format()
    assert not by_name["test_training_matches_single_process"].passed, report.format()
    assert "rank" in by_name["test_training_matches_single_process"].message
