"""labkit.secure: the crafted pickle is refused by both safe loaders, every tampering case of a sealed file is
refused with its own error, the signed manifest catches a changed file or signature, and the privacy tools work.
Keys live in pytest's tmp_path or in monkeypatched environment variables, never in the repository."""
import base64
import json

import numpy as np
import pytest
import torch
from torch import nn

from labkit.secure import crypto, manifest, membership, serialization
from labkit.secure.errors import (KeyMissingError, ManifestError, ModelMismatchError, NotSealedError,
                                  SecurityError, TamperedError, TruncatedError, UnsafeCheckpointError, WrongKeyError)


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).state_dict()


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------- safe deserialization


def test_crafted_checkpoint_runs_code_when_loaded_unsafely(tmp_path):
    """the demonstration is real: weights_only=False writes the marker (so the refusal below means something)"""
    marker = tmp_path / "marker.txt"
    path = serialization.write_crafted_checkpoint(tmp_path / "evil.pt", _state(), marker)
    assert not marker.exists()
    serialization.unsafe_load(path)
    assert marker.exists() and "checkpoint" in marker.read_text()


def test_safe_load_refuses_the_crafted_checkpoint_without_running_it(tmp_path):
    marker = tmp_path / "marker.txt"
    path = serialization.write_crafted_checkpoint(tmp_path / "evil.pt", _state(), marker)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        serialization.safe_load(path)
    assert not marker.exists()
    assert any(g.endswith(".exec") for g in serialization.pickle_globals(path))  # read without unpickling
    assert not marker.exists()


def test_safe_load_and_safetensors_round_trip_plain_weights(tmp_path):
    state = _state()
    torch.save(state, tmp_path / "ok.pt")
    assert _equal(serialization.safe_load(tmp_path / "ok.pt"), state)
    serialization.save_safetensors(state, tmp_path / "ok.safetensors")
    assert _equal(serialization.load_safetensors(tmp_path / "ok.safetensors"), state)


def test_safetensors_refuses_to_write_an_object(tmp_path):
    with pytest.raises(Exception):
        serialization.save_safetensors({"w": torch.zeros(2), "note": object()}, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_safetensors_refuses_a_pickle(tmp_path):
    marker = tmp_path / "marker.txt"
    path = serialization.write_crafted_checkpoint(tmp_path / "evil.safetensors", _state(), marker)
    with pytest.raises(UnsafeCheckpointError, match="not a valid safetensors"):
        serialization.load_safetensors(path)
    assert not marker.exists()


def test_load_times_measures_both_formats(tmp_path):
    times = serialization.load_times_ms(_state(), tmp_path, repeats=3)
    assert len(times) == 2 and all(ms > 0 for ms in times.values())


# ---------------------------------------------------------------------------------- encryption at rest


@pytest.fixture
def sealed(tmp_path):
    key = crypto.generate_key()
    path = crypto.seal_file(tmp_path / "m.sealed", _state(), key, "digits-mlp", "1")
    return key, path


def test_seal_round_trip_and_ciphertext_hides_the_weights(sealed):
    key, path = sealed
    assert _equal(crypto.unseal_file(path, key, "digits-mlp", "1"), _state())
    raw = _state()["0.weight"].numpy().tobytes()
    assert raw[:64] not in path.read_bytes(), "weights must not appear in clear in the file"


def test_two_seals_of_one_model_differ(sealed):
    key, path = sealed
    assert crypto.seal(_state(), key, "digits-mlp", "1") != path.read_bytes()  # a fresh nonce per file


@pytest.mark.parametrize("where", ["header", "ciphertext", "tag"])
def test_a_flipped_byte_anywhere_is_refused_as_tampered(sealed, where):
    key, path = sealed
    blob = bytearray(path.read_bytes())
    header_len = int.from_bytes(blob[28:32], "big")
    index = {"header": 32 + header_len // 2, "ciphertext": len(blob) // 2, "tag": len(blob) - 3}[where]
    blob[index] ^= 0x01
    with pytest.raises(TamperedError, match="altered|changed"):
        crypto.unseal(bytes(blob), key, "digits-mlp", "1")


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.02])
def test_a_truncated_file_is_refused_as_truncated(sealed, keep):
    key, path = sealed
    blob = path.read_bytes()
    with pytest.raises(TruncatedError):
        crypto.unseal(blob[: int(len(blob) * keep)], key, "digits-mlp", "1")


def test_bytes_appended_are_refused(sealed):
    key, path = sealed
    with pytest.raises(TamperedError, match="appended"):
        crypto.unseal(path.read_bytes() + b"x", key, "digits-mlp", "1")


def test_a_wrong_key_is_refused_as_wrong_key(sealed):
    _, path = sealed
    with pytest.raises(WrongKeyError, match="wrong key"):
        crypto.unseal_file(path, crypto.generate_key(), "digits-mlp", "1")


def test_a_file_swapped_for_another_model_is_refused(sealed, tmp_path):
    key, _ = sealed
    other = crypto.seal_file(tmp_path / "other.sealed", _state(1), key, "shapes-cnn", "1")
    with pytest.raises(ModelMismatchError, match="swapped"):
        crypto.unseal_file(other, key, "digits-mlp", "1")
    older = crypto.seal_file(tmp_path / "old.sealed", _state(1), key, "digits-mlp", "0")
    with pytest.raises(ModelMismatchError, match="version '0'"):
        crypto.unseal_file(older, key, "digits-mlp", "1")


def test_a_swapped_file_with_its_header_edited_to_match_is_tampered(sealed, tmp_path):
    """the name is associated data: rewriting it to pass the check breaks the tag"""
    key, _ = sealed
    blob = crypto.seal(_state(1), key, "digits-mlq", "1")
    forged = blob.replace(b'"digits-mlq"', b'"digits-mlp"')
    with pytest.raises(TamperedError):
        crypto.unseal(forged, key, "digits-mlp", "1")


def test_not_a_sealed_file(tmp_path):
    torch.save(_state(), tmp_path / "plain.pt")
    with pytest.raises(NotSealedError, match="not a sealed model"):
        crypto.unseal_file(tmp_path / "plain.pt", crypto.generate_key(), "digits-mlp", "1")


def test_every_refusal_is_a_security_error():
    for error in (TamperedError, TruncatedError, WrongKeyError, ModelMismatchError, NotSealedError,
                  KeyMissingError, UnsafeCheckpointError, ManifestError):
        assert issubclass(error, SecurityError)


def test_key_from_environment_then_key_file(tmp_path, monkeypatch):
    key, other = crypto.generate_key(), crypto.generate_key()
    key_file = crypto.write_key_file(tmp_path / "model.key", other)
    assert (key_file.stat().st_mode & 0o777) == 0o600
    monkeypatch.setenv("LABKIT_TEST_KEY", base64.b64encode(key).decode())
    assert crypto.load_key("LABKIT_TEST_KEY", key_file) == key
    monkeypatch.delenv("LABKIT_TEST_KEY")
    assert crypto.load_key("LABKIT_TEST_KEY", key_file) == other
    with pytest.raises(KeyMissingError, match="LABKIT_TEST_KEY"):
        crypto.load_key("LABKIT_TEST_KEY", tmp_path / "absent.key")
    monkeypatch.setenv("LABKIT_TEST_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(KeyMissingError, match="5 bytes"):
        crypto.load_key("LABKIT_TEST_KEY")


def test_key_file_inside_the_repository_is_refused():
    from labkit.paths import REPO_ROOT
    with pytest.raises(KeyMissingError, match="inside the repository"):
        crypto.write_key_file(REPO_ROOT / "model.key", crypto.generate_key())
    assert not (REPO_ROOT / "model.key").exists()


# ---------------------------------------------------------------------------------- signed manifest


@pytest.fixture
def release(tmp_path):
    (tmp_path / "weights.sealed").write_bytes(b"w" * 100)
    (tmp_path / "config.json").write_text(json.dumps({"hidden": 256}))
    private, public = manifest.generate_signing_key()
    m = manifest.build_manifest(tmp_path, ["weights.sealed", "config.json"], "digits-mlp", "1")
    return tmp_path, manifest.sign_manifest(m, private), public


def test_manifest_verifies_and_matches_hashlib(release):
    import hashlib
    folder, signed, public = release
    m = manifest.verify_manifest(signed, public, folder)
    assert m["files"]["weights.sealed"]["sha256"] == hashlib.sha256(b"w" * 100).hexdigest()


def test_manifest_catches_a_changed_file(release):
    folder, signed, public = release
    (folder / "config.json").write_text(json.dumps({"hidden": 512}))
    with pytest.raises(ManifestError, match="config.json"):
        manifest.verify_manifest(signed, public, folder)


def test_manifest_catches_an_edited_manifest_and_a_foreign_key(release):
    folder, signed, public = release
    edited = json.loads(json.dumps(signed))
    edited["manifest"]["version"] = "2"
    with pytest.raises(ManifestError, match="signature"):
        manifest.verify_manifest(edited, public, folder)
    _, stranger = manifest.generate_signing_key()
    with pytest.raises(ManifestError, match="signature"):
        manifest.verify_manifest(signed, stranger, folder)


def test_manifest_catches_a_missing_file(release):
    folder, signed, public = release
    (folder / "weights.sealed").unlink()
    with pytest.raises(ManifestError, match="missing"):
        manifest.verify_manifest(signed, public, folder)


# ---------------------------------------------------------------------------------- privacy


def test_attack_on_separated_losses_and_on_identical_distributions():
    rng = np.random.default_rng(0)
    result = membership.loss_threshold_attack(rng.uniform(0, 1, 200), rng.uniform(2, 3, 200))
    assert result.advantage == 1.0 and result.auc == 1.0
    same = membership.loss_threshold_attack(rng.exponential(1, 400), rng.exponential(1, 400))
    assert abs(same.advantage) < 0.15 and abs(same.auc - 0.5) < 0.06


def test_auc_matches_scikit_learn():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(1)
    loss_in, loss_out = rng.exponential(0.5, 50), rng.exponential(1.0, 60)
    want = roc_auc_score([1] * 50 + [0] * 60, -np.concatenate([loss_in, loss_out]))
    assert np.isclose(membership.auc(loss_in, loss_out), want)


def test_membership_data_is_disjoint_and_stratified():
    from labkit.data import load_digits_split
    from labkit.secure.privacy import membership_data
    d = membership_data(load_digits_split(), 100)
    assert len(d.X_in) == len(d.X_out) == 100 and d.X_in.shape[1] == 64
    assert np.bincount(d.y_in.numpy(), minlength=10).tolist() == [10] * 10
    assert np.bincount(d.y_out.numpy(), minlength=10).tolist() == [10] * 10
    with pytest.raises(ValueError, match="multiple of 10"):
        membership_data(load_digits_split(), 105)


def test_dp_sgd_spends_about_the_target_epsilon_and_learns():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLP: one thread is as fast, and a busy second core cannot stall it
    try:
        _dp_sgd_checks()
    finally:
        torch.set_num_threads(threads)


def _dp_sgd_checks() -> None:
    from labkit.data import load_digits_split
    from labkit.secure.privacy import PrivacyConfig, accuracy_of, membership_data, train_dp, train_plain
    config = PrivacyConfig(n_members=100, epochs=20, dp_epochs=8, dp_batch_size=50)
    d = membership_data(load_digits_split(), config.n_members)
    model, spent = train_dp(d.X_in, d.y_in, config, target_epsilon=8.0)
    assert 7.0 < spent <= 8.05, f"spent epsilon {spent}"
    assert accuracy_of(model, d.X_test, d.y_test) > 0.3  # 10 classes: chance is 0.1
    plain = train_plain(d.X_in, d.y_in, config)
    assert accuracy_of(plain, d.X_test, d.y_test) > 0.8
    with pytest.raises(ValueError, match="target_epsilon"):
        train_dp(d.X_in, d.y_in, config, target_epsilon=0)
