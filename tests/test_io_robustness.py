"""Bad input at the io layer: big-endian files, shards truncated mid-read, malformed vocabularies, hub revisions
that name paths, and hints that fit the format. Each case fails on the code before its fix."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streamscope.cli import app
from streamscope.errors import CheckpointError
from streamscope.io import hub

runner = CliRunner()


# --- hub revisions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", ["/any/file", "../../x", "main/../../x", "a\\b", "ma\x00in", "a//b", ""])
def test_hub_revision_that_names_a_path_is_refused(revision):
    with pytest.raises(CheckpointError, match="invalid revision"):
        hub.parse(f"hf://a/b@{revision}")
    with pytest.raises(CheckpointError, match="invalid revision"):
        hub.resolve("hf://a/b", revision=revision or "..")


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567"])
def test_hub_revisions_that_are_refs_are_kept(revision):
    assert hub.parse(f"hf://a/b@{revision}") == ("a/b", revision)


def test_scan_of_a_revision_naming_a_file_is_one_error(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "ref").write_text(str(target))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = runner.invoke(app, ["scan", f"hf://a/b@{tmp_path / 'ref'}", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert "invalid revision" in result.output
    assert not (tmp_path / "out" / "model.json").exists()
