"""The one writer: a write that fails half-way leaves the old file (or folder) exactly as it was, and no temporary
file behind; a finished write replaces it whole."""
import json

import pytest

from modeconn.files import atomic_folder, atomic_write, write_all, write_json


class Boom(RuntimeError):
    pass


def half_written(path):
    path.write_text('{"half": ')  # what a killed serialiser leaves
    raise Boom("killed during serialisation")


def test_a_failed_write_leaves_the_old_file_intact(tmp_path):
    target = tmp_path / "barrier.json"
    atomic_write(target, '{"old": true}\n')
    with pytest.raises(Boom):
        atomic_write(target, half_written)
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["barrier.json"]


def test_json_that_is_not_json_is_refused_before_anything_is_replaced(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"AP": 0.5})
    with pytest.raises(ValueError):
        write_json(target, {"AP": float("nan")})
    assert json.loads(target.read_text()) == {"AP": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_result_folder_is_written_together_or_not_at_all(tmp_path):
    write_all(tmp_path, {"a.json": "1\n", "a.png": b"\x89PNG"})
    with pytest.raises(Boom):
        write_all(tmp_path, {"a.json": "2\n", "a.png": half_written})
    assert (tmp_path / "a.json").read_text() == "1\n" and (tmp_path / "a.png").read_bytes() == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.png"]


def test_an_adapter_folder_is_swapped_in_whole(tmp_path):
    folder = tmp_path / "news"
    with atomic_folder(folder) as tmp:
        (tmp / "adapter_config.json").write_text("{}")
    with pytest.raises(Boom), atomic_folder(folder) as tmp:
        (tmp / "adapter_config.json").write_text('{"r": 8}')
        raise Boom("killed while saving the weights")
    assert (folder / "adapter_config.json").read_text() == "{}"
    with atomic_folder(folder) as tmp:
        (tmp / "other.json").write_text("[]")
    assert [p.name for p in folder.iterdir()] == ["other.json"]  # replaced, not merged
    assert [p.name for p in tmp_path.iterdir()] == ["news"]
