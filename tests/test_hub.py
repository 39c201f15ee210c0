"""Hub ids against a stand-in hub on 127.0.0.1 (``HF_ENDPOINT``): download, cache reuse, revisions, header-only
``params`` over HTTP ranges, provenance, offline errors. Each case runs in a child process, so that
``huggingface_hub`` reads ``HF_ENDPOINT`` fresh and nothing can reach another host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def run_child(body: str, tmp_path: Path, llama_dir: Path, endpoint: str | None = None) -> dict:
    script = textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from hubserver import StandInHub
        out = {{}}
        with StandInHub() as hub:
            commit = hub.add("org/tiny-llama", Path({str(llama_dir)!r}))
            os.environ["HF_ENDPOINT"] = {endpoint!r} or hub.endpoint
            import streamscope
        {textwrap.indent(textwrap.dedent(body), " " * 12)}
        print(json.dumps(out, default=str))
    """)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"}  # fmt: skip
    env.pop("HF_ENDPOINT", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_scan_downloads_once_then_uses_the_cache(tmp_path, llama_dir):
    out = run_child("""
        r = streamscope.scan("org/tiny-llama", out="first")
        out["tensors"], out["provenance"], out["commit"] = len(r.tensors), r.model["provenance"], commit
        out["columns"] = list(r.table.columns[:5])
        first = [p for m, p, _ in hub.requests if m == "GET" and p.endswith(".safetensors")]
        hub.requests.clear()
        again = streamscope.scan("hf://org/tiny-llama@" + commit, out="second")
        out["again_tensors"] = len(again.tensors)
        out["downloads"] = [len(first), len([p for m, p, _ in hub.requests if m == "GET" and p.endswith(".safetensors")])]
        out["cache"] = sorted(p.name for p in Path(os.environ["HF_HOME"]).rglob("*.safetensors"))
    """, tmp_path, llama_dir)
    assert out["tensors"] == out["again_tensors"] == 30
    assert out["provenance"]["model_id"] == "org/tiny-llama" and out["provenance"]["revision"] == out["commit"]
    assert out["columns"] == ["model_path", "model_id", "revision", "created_at", "tensor"]
    assert out["downloads"] == [2, 0]  # both shards once, then the cache
    assert out["cache"] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def test_remote_params_read_headers_only(tmp_path, llama_dir):
    out = run_child("""
        p = streamscope.params("hf://org/tiny-llama")
        out["total"], out["bytes"] = p["total_params"], p["provenance"]["bytes_transferred"]
        out["served"] = sum(n for path, n in hub.served if path.endswith(".safetensors"))
        out["unranged"] = [p for m, p, r in hub.requests if p.endswith(".safetensors") and (m == "HEAD" or r is None)]
        out["heads"] = p["layers"][0]["attention"]["num_heads"]
        c = streamscope.compare("hf://org/tiny-llama", "hf://org/tiny-llama")
        out["compare"] = c["total_params"]["reduced"]
    """, tmp_path, llama_dir)
    import streamscope

    local = streamscope.params(llama_dir)
    shards = sum(f.stat().st_size for f in llama_dir.glob("*.safetensors"))
    assert out["total"] == local["total_params"] and out["heads"] == 8 and out["compare"] == 0
    headers = sum(8 + int.from_bytes(f.read_bytes()[:8], "little") for f in llama_dir.glob("*.safetensors"))
    assert out["unranged"] == [] and out["served"] == headers  # exactly the length prefixes and headers of the shards
    assert headers <= out["bytes"] < 16_000 < shards  # plus config.json and the index


def test_revision_and_offline_errors_are_one_line(tmp_path, llama_dir):
    out = run_child("""
        for name, target in (("revision", "hf://org/tiny-llama@no-such-branch"), ("repo", "org/absent")):
            try:
                streamscope.scan(target, out="o")
            except streamscope.StreamscopeError as e:
                out[name] = str(e)
    """, tmp_path, llama_dir)
    assert "hf://org/tiny-llama@no-such-branch" not in out["revision"] and out["revision"].startswith("org/tiny-llama: no such local path")
    assert "use a local path" in out["repo"]
    offline = run_child("""
        try:
            streamscope.params("hf://org/tiny-llama")
        except streamscope.StreamscopeError as e:
            out["error"] = str(e)
    """, tmp_path, llama_dir, endpoint="http://127.0.0.1:9")
    assert offline["error"].startswith("org/tiny-llama: no such local path, and the hub at http://127.0.0.1:9 cannot give it")


def test_download_command(tmp_path, llama_dir):
    out = run_child("""
        from typer.testing import CliRunner
        from streamscope.cli import app
        result = CliRunner().invoke(app, ["download", "org/tiny-llama", "--local-dir", "local", "--include", "*.json"])
        out["code"], out["output"] = result.exit_code, result.output
        out["files"] = sorted(p.name for p in Path("local").iterdir() if p.is_file())
    """, tmp_path, llama_dir)
    assert out["code"] == 0, out["output"]
    assert out["files"] == ["config.json", "generation_config.json", "model.safetensors.index.json"]


def test_mistyped_local_path_is_reported_as_a_path(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from streamscope.cli import app

    (tmp_path / "models" / "smollm2-135m").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for command in (["scan", "models/smollm2-135mm"], ["params", "models/smollm2-135mm"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1
        text = " ".join(result.output.split())
        assert "models/smollm2-135mm: no such file or directory" in text and "did you mean models/smollm2-135m?" in text
        assert "hub at" not in text and "hf://models/smollm2-135mm" in text  # the repo, if that was meant


def test_offline_errors_are_whole_sentences(tmp_path):
    """With HF_HUB_OFFLINE=1 set: no advice to set it, no sentence cut off, no hint about checkpoint file formats."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "COLUMNS": "400",
           "PYTHONPATH": str(TESTS.parent), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}  # fmt: skip
    for command in ("scan", "params"):
        proc = subprocess.run([sys.executable, "-m", "streamscope", command, "org/not-cached"], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120)  # fmt: skip
        assert proc.returncode == 1
        err = proc.stderr
        assert "HF_HUB_OFFLINE is set" in err and "HF_HUB_OFFLINE=1" not in err, err
        assert err.count("(") == err.count(")") and ".safetensors" not in err, err


def test_first_sentence_never_cuts_a_word():
    from streamscope.io.hub import first_sentence

    text = ("Cannot find an appropriate cached snapshot folder for the specified revision on the local disk and outgoing "
            "traffic has been disabled. To enable repo look-ups and downloads online, pass 'local_files_only=False'.")  # fmt: skip
    assert first_sentence(text, 200) == text.split(". ")[0] + "."
    short = first_sentence(text, 40)
    assert short.endswith(" …") and text.startswith(short[:-2]) and text[len(short) - 2] == " "


def test_a_gguf_repo_downloads_its_gguf_or_says_which_to_take(tmp_path, llama_dir):
    """A repo with no safetensors: its one GGUF file is downloaded and scanned; with several, one line says how to
    take one of them."""
    from test_formats import write_gguf

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write_gguf(one / "tiny-Q8_0.gguf")
    write_gguf(two / "tiny-Q8_0.gguf")
    write_gguf(two / "tiny-Q4_0.gguf", seed=1)
    out = run_child(f"""
        hub.add("org/one-gguf", Path({str(one)!r}))
        hub.add("org/two-gguf", Path({str(two)!r}))
        r = streamscope.scan("org/one-gguf", out="one")
        out["tensors"], out["format"] = len(r.tensors), sorted(p.suffix for p in Path(os.environ["HF_HOME"]).rglob("*.gguf"))
        try:
            streamscope.scan("org/two-gguf", out="two")
        except streamscope.CheckpointError as e:
            out["error"], out["hint"] = str(e), e.hint
    """, tmp_path, llama_dir)
    assert out["tensors"] == 6 and out["format"] == [".gguf"]
    assert out["error"].startswith("org/two-gguf: holds 2 GGUF files") and "tiny-Q4_0.gguf" in out["error"]
    assert "streamscope download org/two-gguf --include" in out["hint"]
