"""Hidden tests for model_encryption: every byte position flipped, every length cut, dtypes and a big state dict."""
import torch

from labkit.exercises.model_encryption import KEY, _same, _state


def test_hidden_every_flipped_byte_is_a_seal_error(sub):
    """a bit flipped at any of ~60 positions across the file raises a SealError, never another exception"""
    blob = sub.encrypt_model(_state(4), KEY, "edge-model", "7")
    positions = sorted(set(list(range(0, min(len(blob), 96), 3)) + list(range(0, len(blob), max(1, len(blob) // 30)))))
    for i in positions:
        damaged = blob[:i] + bytes([blob[i] ^ 0x80]) + blob[i + 1:]
        try:
            sub.decrypt_model(damaged, KEY, "edge-model", "7")
        except sub.SealError:
            continue
        except Exception as err:  # noqa: BLE001
            raise AssertionError(f"byte {i} of {len(blob)} flipped: {type(err).__name__}: {err} escaped; parse the "
                                 "header defensively and turn every failure into a SealError") from None
        raise AssertionError(f"byte {i} of {len(blob)} flipped and the file was accepted")


def test_hidden_every_cut_is_refused(sub):
    """a file cut at any tenth of its length raises a SealError; past the header, TruncatedError"""
    blob = sub.encrypt_model(_state(5), KEY, "edge-model", "7")
    for tenth in range(10):
        cut = blob[: len(blob) * tenth // 10]
        try:
            sub.decrypt_model(cut, KEY, "edge-model", "7")
        except sub.TruncatedError:
            continue
        except sub.SealError as err:
            assert tenth == 0 or len(cut) < 200, f"a file cut to {len(cut)} bytes raised {type(err).__name__}, " \
                                                 "expected TruncatedError"
            continue
        except Exception as err:  # noqa: BLE001
            raise AssertionError(f"cut to {len(cut)} bytes: {type(err).__name__}: {err}") from None
        raise AssertionError(f"a file cut to {len(cut)} of {len(blob)} bytes was accepted")


def test_hidden_dtypes_and_many_tensors(sub):
    """float16, int8, bool, a non-contiguous tensor and 200 tensors round-trip exactly"""
    g = torch.Generator().manual_seed(6)
    state = {f"layer{i}.weight": torch.randn(8, 4, generator=g) for i in range(200)}
    state.update({"half": torch.randn(5, generator=g).half(), "codes": torch.arange(-5, 5, dtype=torch.int8),
                  "mask": torch.tensor([True, False, True]), "transposed": torch.randn(3, 6, generator=g).t()})
    got = sub.decrypt_model(sub.encrypt_model(state, KEY, "big", "1"), KEY, "big", "1")
    assert _same(got, state), "a state dict with 204 tensors of mixed dtypes did not round-trip exactly"


TESTS = (test_hidden_every_flipped_byte_is_a_seal_error, test_hidden_every_cut_is_refused,
         test_hidden_dtypes_and_many_tensors)
