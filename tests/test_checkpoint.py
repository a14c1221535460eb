from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from multitask_mnist.training import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip(tmp_path: Path) -> None:
    state = {"format": 2, "model": {"w": torch.arange(3.0)}, "epoch": 2, "rng": (3, (1, 2), None)}
    path = save_checkpoint(state, tmp_path / "last.pt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0)) and loaded["epoch"] == 2


def test_failed_write_keeps_the_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint({"format": 2, "model": {}, "epoch": 1}, tmp_path / "last.pt")
    good = path.read_bytes()

    def disk_full(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(
        CheckpointError, match=r"No space left on device; the previous file, if any, is intact$"
    ):
        save_checkpoint({"format": 2, "model": {}, "epoch": 2}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_unwritable_folder(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = (
            tmp_path / "missing" / "last.pt"
        )  # root ignores permissions; a missing folder fails
    else:
        tmp_path.chmod(0o500)
        target = tmp_path / "last.pt"
    with pytest.raises(CheckpointError, match=r"^Could not write checkpoint "):
        save_checkpoint({"format": 2, "model": {}}, target)


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(os.environ["PAYLOAD_MARKER"]),))


def test_pickle_payload_is_refused_without_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    monkeypatch.setenv("PAYLOAD_MARKER", str(marker))
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "extra": _Payload()}, path)
    with pytest.raises(
        CheckpointError, match=r"^Refused to load .*evil.pt: it carries pickled objects"
    ):
        load_checkpoint(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(
        CheckpointError, match=r"is not a readable checkpoint \(not a torch.save archive\)$"
    ):
        load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(
        CheckpointError, match=r"is not a multitask_mnist checkpoint \(no 'model' entry\)$"
    ):
        load_checkpoint(other)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^Checkpoint not found: "):
        load_checkpoint(tmp_path / "nope.pt")


def test_architecture_mismatch_names_the_layers() -> None:
    from torch import nn

    from multitask_mnist import presets
    from multitask_mnist.training import load_model_state

    model = presets.mnist_sum()
    state = dict(model.state_dict())
    state["trunk.conv1.weight"] = torch.zeros(8, 16, 3, 3)
    del state["head.out2.bias"]
    state["head.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_model_state(model, state, source="ckpt.pt")
    assert str(info.value) == (
        "ckpt.pt does not fit this network: layers missing from it: head.out2; "
        "layers this network lacks: head.extra; "
        "layers with other shapes: trunk.conv1.weight (32, 16, 3, 3) here, (8, 16, 3, 3) there"
    )
    load_model_state(nn.Linear(2, 2), nn.Linear(2, 2).state_dict(), source="same")  # no error


def test_output_dir_that_cannot_be_written(tmp_path: Path) -> None:
    from multitask_mnist.training import prepare_output_dir

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match=r"^Cannot write to the output folder .*file/run: "):
        prepare_output_dir(blocker / "run")


def test_stale_temporary_files_are_swept(tmp_path: Path) -> None:
    from multitask_mnist.training import prepare_output_dir

    (tmp_path / ".last.pt.123.abcd1234.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "last.pt").write_bytes(b"keep")
    prepare_output_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"model": {}}, "is not a multitask_mnist checkpoint (no 'format' entry;"),
        (
            {"format": 99, "model": {}},
            "has checkpoint format 99; this version of multitask_mnist reads formats 1, 2, 3, 4 "
            "(was it written by a newer one?)",
        ),
    ],
)
def test_the_format_version_is_checked_on_load(
    tmp_path: Path, state: dict[str, Any], message: str
) -> None:
    path = save_checkpoint(state, tmp_path / "last.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path} {message}" or str(info.value).startswith(f"{path} {message}")
