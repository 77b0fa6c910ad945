"""`export --web DIR` into a folder that holds other files: a non-empty DIR is refused without
--overwrite (exit 2, one line, nothing deleted or replaced); with --overwrite only the files an
earlier export wrote (its manifest, unchanged since) are replaced, anything else in the way
stops it before a file is written; an interrupted install can be rerun. The ONNX export itself
is replaced by a stand-in writing the same four files (the real one: tests/test_export.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infinitygan.cli import main
from infinitygan.export import owned_folder as owned
from infinitygan.export import web_page

MANIFEST = web_page.WEB_MANIFEST


def fake_export_onnx(model, out, check=True):
    out = Path(out)
    out.mkdir(parents=True)
    for g in ("mapping", "structure", "texture"):
        (out / f"{g}.onnx").write_bytes(f"graph {g} of {model.config.name}".encode())
    (out / "manifest.json").write_text(json.dumps({"format": "infinitygan-export"}))
    return out


@pytest.fixture(autouse=True)
def quick_export(monkeypatch):
    monkeypatch.setattr(web_page, "export_onnx", fake_export_onnx)


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (links not followed): file bytes, link targets, folders."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            out[rel] = ("link", os.readlink(p)) if p.is_symlink() else ("dir",) if p.is_dir() \
                else ("file", p.read_bytes())
    return out


def run(capsys, *args) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(["export", *args])
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def users_folder(tmp_path):
    """A folder of the user's: their own index.html, a file where ort/ goes, a symlink where
    leaflet/ goes (to another folder of theirs), notes."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>my page</p>")
    (site / "ort").write_text("not a folder")
    (site / "notes.txt").write_text("keep me")
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "leaflet.js").write_text("my own leaflet")
    (site / "leaflet").symlink_to(elsewhere, target_is_directory=True)
    return site


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_the_users_is_refused_and_left_as_it_was(users_folder, tiny_model_file, capsys, overwrite):
    before = snapshot(users_folder.parent)
    rc, err = run(capsys, "--model", str(tiny_model_file), "--web", str(users_folder),
                  *(["--overwrite"] if overwrite else []))
    assert rc == 2 and len(err) == 1, err
    assert ("not empty" in err[0]) if not overwrite else ("index.html" in err[0] or "in the way" in err[0]), err
    assert snapshot(users_folder.parent) == before


@pytest.mark.parametrize("intruder", ["file", "symlink", "folder", "edited"])
def test_overwrite_replaces_only_what_an_earlier_export_wrote(tmp_path, tiny_model_file, capsys, intruder):
    site = tmp_path / "site"
    assert run(capsys, "--model", str(tiny_model_file), "--web", str(site))[0] == 0
    listed = json.loads((site / MANIFEST).read_text())["files"]
    assert {"index.html", "explorer.js", "canvas.js", "explorer.css", "ort/ort.wasm.min.js", "leaflet/leaflet.js",
            "model/texture.onnx", "model/manifest.json"} <= listed.keys()
    assert not [p for p in site.iterdir() if p.name.startswith(".infinitygan-staging")]

    # without --overwrite: refused, nothing touched
    before = snapshot(tmp_path)
    rc, err = run(capsys, "--model", str(tiny_model_file), "--web", str(site))
    assert rc == 2 and len(err) == 1 and "--overwrite" in err[0], err
    assert snapshot(tmp_path) == before

    # --overwrite with the user's own file beside: replaced the export's files, kept theirs
    (site / "notes.txt").write_text("keep me")
    (site / "model" / "texture.onnx").write_bytes(b"stale")
    listed["model/texture.onnx"] = [owned.sha256(site / "model" / "texture.onnx")]
    (site / MANIFEST).write_text(json.dumps({"format": owned.FORMAT, "files": listed}))
    assert run(capsys, "--model", str(tiny_model_file), "--web", str(site), "--overwrite")[0] == 0
    assert (site / "notes.txt").read_text() == "keep me"
    assert (site / "model" / "texture.onnx").read_bytes().startswith(b"graph texture")

    # something the export did not write, where it writes: refused with one line, nothing touched
    if intruder == "file":
        import shutil

        shutil.rmtree(site / "ort")
        (site / "ort").write_text("mine")
    elif intruder == "symlink":
        import shutil

        shutil.rmtree(site / "leaflet")
        (tmp_path / "precious").mkdir()
        (tmp_path / "precious" / "leaflet.js").write_text("mine")
        (site / "leaflet").symlink_to(tmp_path / "precious", target_is_directory=True)
    elif intruder == "folder":
        (site / "canvas.js").unlink()
        (site / "canvas.js").mkdir()
        (site / "canvas.js" / "x").write_text("mine")
    else:
        (site / "explorer.js").write_text("// my edits")
    before = snapshot(tmp_path)
    rc, err = run(capsys, "--model", str(tiny_model_file), "--web", str(site), "--overwrite")
    assert rc == 2 and len(err) == 1, err
    assert ("changed since" in err[0]) if intruder == "edited" else True, err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", json.dumps({"format": owned.FORMAT, "files": {"../x": ["0"]}})])
def test_a_malformed_manifest_is_one_line(tmp_path, tiny_model_file, capsys, content):
    site = tmp_path / "site"
    site.mkdir()
    (site / MANIFEST).write_text(content)
    (tmp_path / "x").write_text("outside")
    before = snapshot(tmp_path)
    rc, err = run(capsys, "--model", str(tiny_model_file), "--web", str(site), "--overwrite")
    assert rc == 2 and len(err) == 1 and "not the manifest" in err[0], err
    assert snapshot(tmp_path) == before


def test_overwrite_goes_with_web(tmp_path, tiny_model_file, capsys):
    rc, err = run(capsys, "--model", str(tiny_model_file), "--out", str(tmp_path / "o"), "--overwrite")
    assert rc == 2 and len(err) == 1 and "--web" in err[0], err
    assert not (tmp_path / "o").exists()


def test_a_failed_export_leaves_no_new_folder(tmp_path, tiny_model_file, capsys, monkeypatch):
    from infinitygan.errors import UserError

    def broken(model, out, check=True):
        raise UserError("ONNX export needs onnx and onnxscript")

    monkeypatch.setattr(web_page, "export_onnx", broken)
    rc, err = run(capsys, "--model", str(tiny_model_file), "--web", str(tmp_path / "site"))
    assert rc == 2 and len(err) == 1
    assert not (tmp_path / "site").exists()


def _stage(root: Path, files: dict[str, str]) -> Path:
    stage = root / ".stage"
    for name, text in files.items():
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        (stage / name).write_text(text)
    return stage


def test_an_interrupted_install_can_be_rerun_and_old_files_go_only_if_unchanged(tmp_path, monkeypatch):
    root = tmp_path / "r"
    root.mkdir()
    owned.install(root, _stage(root, {"a.txt": "a1", "d/b.txt": "b1", "gone.txt": "g", "kept.txt": "k"}), "m.json")
    (root / "kept.txt").write_text("edited by the user")

    # the second install dies after moving one file: the manifest accepts old and new content
    real, calls = os.replace, []

    def dying(src, dst):
        if Path(dst).name != "m.json":
            calls.append(dst)
            if len(calls) == 2:
                raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(owned.os, "replace", dying)
    with pytest.raises(KeyboardInterrupt):
        owned.install(root, _stage(root, {"a.txt": "a2", "d/b.txt": "b2"}), "m.json")
    monkeypatch.setattr(owned.os, "replace", real)
    assert [(root / "a.txt").read_text(), (root / "d/b.txt").read_text()] == ["a2", "b1"]  # half done

    owned.install(root, _stage(root, {"a.txt": "a2", "d/b.txt": "b2"}), "m.json")
    assert (root / "a.txt").read_text() == "a2" and (root / "d/b.txt").read_text() == "b2"
    assert not (root / "gone.txt").exists()  # the earlier run's, unchanged: removed
    assert (root / "kept.txt").read_text() == "edited by the user"  # changed since: kept
    assert set(owned.read_manifest(root, "m.json")) == {"a.txt", "d/b.txt"}
