"""Hidden tests for bug_dense_on_feature_map: large and non-square-sized images, other class counts."""
from labkit.exercises.bug_dense_on_feature_map import _scores


def test_hidden_large_images_and_classes(sub):
    """64x64 and 12x12 images with 7 and 2 classes: scores (N, classes)"""
    for size, classes in ((64, 7), (12, 2)):
        _, out = _scores(sub, size, n=2, num_classes=classes)
        assert tuple(out.shape) == (2, classes), f"{size}x{size} images gave scores {tuple(out.shape)}"


TESTS = (test_hidden_large_images_and_classes,)
