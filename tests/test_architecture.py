"""The seams a newcomer extends: the analysis registry, the format seam, the pipeline's budget, lazy imports."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import streamscope
from streamscope.analyses import REGISTRY
from streamscope.cli import app
from streamscope.engine.budget import MemoryBudget
from streamscope.engine.options import ScanOptions
from streamscope.synthetic import save_tensors

TESTS = Path(__file__).parent
runner = CliRunner()


@pytest.fixture
def toy():
    sys.path.insert(0, str(TESTS))
    try:
        import toy_analysis

        REGISTRY.analyses.setdefault("toy", toy_analysis.TOY)
        yield toy_analysis.TOY
    finally:
        REGISTRY.unregister("toy")
        sys.path.remove(str(TESTS))


def test_toy_analysis_through_the_registry_alone(toy, tmp_path, monkeypatch):
    assert "toy" in REGISTRY.all() and "toy" in ScanOptions.build("all").analyses
    fp2 = ScanOptions.build("basic,toy").fingerprint()
    assert "toy_scale" in fp2 and fp2 != ScanOptions.build("basic,toy", toy_scale=3.0).fingerprint()
    assert ScanOptions.build("basic").fingerprint() != fp2  # the toy's presence counts too
    path = save_tensors(tmp_path / "m.safetensors", {"w": torch.tensor([[1.0, -4.0], [2.5, 0.5]])})
    out = tmp_path / "out"
    from streamscope.results import ResultStore

    monkeypatch.setattr(ResultStore, "discard_partial", lambda self: None)  # keep .partial as an interrupted run would
    first = streamscope.scan(path, out=out, analyses="all")
    assert first.tensors["w"]["toy"] == {"scaled_max": 5.0}
    assert "toy.scaled_max" in first.table.columns
    same = streamscope.scan(path, out=out, analyses="all")
    assert same.model["timing"]["tensors_reused"] == 1
    again = streamscope.scan(path, out=out, analyses="all", toy_scale=3.0)  # changed option: nothing reused
    assert again.model["timing"]["tensors_reused"] == 0 and again.tensors["w"]["toy"] == {"scaled_max": 7.5}
    with pytest.raises(streamscope.OptionError, match="unknown option 'toy_scal'"):
        streamscope.scan(path, analyses="toy", toy_scal=1.0)


def test_an_analysis_off_the_table_keeps_its_record(toy, tmp_path):
    """``table=False`` (the embedding analysis's per-token rows): the record stays in tensors.json, no column is
    made of it; results.py decides from the registration alone."""
    REGISTRY.analyses["toy"] = dataclasses.replace(toy, table=False)
    path = save_tensors(tmp_path / "m.safetensors", {"model.embed_tokens.weight": torch.randn(32, 8), "w": torch.ones(2, 2)})
    r = streamscope.scan(path, out=tmp_path / "out", analyses="basic,toy")
    assert r.tensors["w"]["toy"] == {"scaled_max": 2.0} and "embedding" in r.tensors["model.embed_tokens.weight"]
    columns = set(r.table.columns) | set((tmp_path / "out" / "tensors.csv").read_text().splitlines()[0].split(","))
    assert "basic_stats.mean" in columns and not {c for c in columns if c.startswith(("toy.", "embedding."))}


def test_toy_analysis_shows_in_cli_help():
    """Registered before the CLI is imported, as every analysis in ``analyses/__init__.py`` is."""
    code = "import toy_analysis; from streamscope.cli import app; app(['scan', '--help'], prog_name='streamscope')"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "COLUMNS": "1000"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "toy: the largest value times toy_scale" in proc.stdout, proc.stdout + proc.stderr


def test_registry_refuses_clashes():
    with pytest.raises(ValueError, match="taken"):
        REGISTRY.register(REGISTRY["sparsity"])
    with pytest.raises(ValueError, match="needs compute"):
        type(REGISTRY["sparsity"])(name="broken", kind="tensor", help="no code")


def test_budget_account():
    b = MemoryBudget.parse("1GB")
    assert b.share(4).total == 256 << 20 and b.block_elems * 25 <= b.total // 3  # 8-byte raw pair, block, scratch, flags
    with pytest.raises(streamscope.OptionError, match="split over 100 workers"):
        b.share(100)


def test_exact_spectrum_stays_inside_the_budget(tmp_path):
    """Asked for the exact method where its float64 copy would not fit: the Gram method, said so."""
    w = torch.randn(8192, 256)
    path = save_tensors(tmp_path / "m.safetensors", {"w": w})
    r = streamscope.scan(path, analyses="spectral", spectral="exact", memory_budget="16MB")
    spec = r.tensors["w"]["spectral"]
    assert spec["method"] == "gram" and spec["method_requested"] == "exact" and "exact needs" in spec["method_note"]
    exact = torch.linalg.svdvals(w.double())
    assert spec["max_singular_value"] == pytest.approx(float(exact[0]), rel=1e-9)
    roomy = streamscope.scan(path, analyses="spectral", spectral="exact", memory_budget="1GB")
    assert roomy.tensors["w"]["spectral"]["method"] == "exact" and "method_note" not in roomy.tensors["w"]["spectral"]


def _rank_one_pair(tmp_path: Path, rows: int, cols: int) -> tuple[Path, Path]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(rows, cols, generator=g)
    a = save_tensors(tmp_path / "a" / "model.safetensors", {"w": w, "same": torch.ones(4, 4)})
    b = save_tensors(tmp_path / "b" / "model.safetensors", {"w": w + 0.1 * torch.outer(torch.ones(rows), torch.ones(cols)), "same": torch.ones(4, 4)})
    return a, b


def test_compare_weights_peak_memory_within_budget(tmp_path):
    """Two 64 MiB tensors compared under a 32 MB budget: the child's peak RSS (VmHWM, reset after a small comparison
    loaded every library) ends less than the budget above its resident size before the comparison."""
    a, b = _rank_one_pair(tmp_path, 4096, 4096)
    small_a, small_b = _rank_one_pair(tmp_path / "small", 64, 64)
    code = textwrap.dedent(rf"""
        import re, streamscope
        status = lambda key: int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1))  # KiB
        streamscope.compare({str(small_a)!r}, {str(small_b)!r}, weights=True, memory_budget="32MB", device="cpu")  # warm imports
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the resident size now
        before = status("VmRSS")
        c = streamscope.compare({str(a)!r}, {str(b)!r}, weights=True, memory_budget="32MB", device="cpu")
        grown = status("VmHWM") - before
        print(grown, c["weights"]["w"]["diff_top_singular_values"][0], c["unchanged_tensors"])
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    grown_kib, top, unchanged = proc.stdout.split(maxsplit=2)
    assert int(grown_kib) < 32 * 1024, f"peak RSS grew by {int(grown_kib) >> 10} MiB under a 32 MB budget"
    assert float(top) == pytest.approx(0.1 * 4096, rel=1e-3)  # the rank-one change 0.1 * 1 1^T has sigma 0.1 * sqrt(4096 * 4096)
    assert "same" in unchanged


def test_compare_weights_honours_device_and_resumes(tmp_path, monkeypatch):
    a, b = _rank_one_pair(tmp_path, 64, 32)
    out = tmp_path / "cmp.json"
    c = streamscope.compare(a, b, weights=True, device="cpu", out=out)
    assert c["options"]["device"] == "cpu" and c["weights"]["w"]["relative_frobenius_change"] > 0
    if not torch.cuda.is_available():
        with pytest.raises(streamscope.DeviceError, match="CUDA is not available"):
            streamscope.compare(a, b, weights=True, device="cuda")
    from streamscope.engine import runner

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished pair must be reused")

    from streamscope.results import ResultStore

    monkeypatch.setattr(ResultStore, "discard_partial", lambda self: None)  # keep the finished pairs, as an interrupt would
    first = streamscope.compare(a, b, weights=True, device="cpu", out=out)
    assert (tmp_path / ".cmp.json.partial").is_dir()
    monkeypatch.setattr(runner.TensorRunner, "run_pair", forbidden)
    again = streamscope.compare(a, b, weights=True, device="cpu", out=out)
    assert again["weights"] == c["weights"] == first["weights"] and not again["errors"]


def test_help_and_params_import_no_heavy_module(llama_dir):
    code = textwrap.dedent(f"""
        import sys
        from streamscope.cli import app
        heavy = {{"torch", "pandas", "dask", "zarr"}}
        assert not heavy & set(sys.modules), heavy & set(sys.modules)
        import streamscope
        p = streamscope.params({str(llama_dir)!r})
        assert not heavy & set(sys.modules), heavy & set(sys.modules)
        print(p["total_params"])
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 0


def test_version_short_help_and_one_line_os_errors(llama_dir, tmp_path):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"streamscope {streamscope.__version__}"
    assert runner.invoke(app, ["params", "-h"]).exit_code == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["params", str(llama_dir), "--out", str(blocker / "p.json")])
    assert result.exit_code == 1 and "error:" in result.output and "Traceback" not in result.output
    assert len([l for l in result.output.splitlines() if l.startswith("error:")]) == 1
    result = runner.invoke(app, ["scan", str(llama_dir), "--workers", "2"])
    assert result.exit_code == 1 and "--scheduler local" in result.output


def test_outputs_carry_schema_version(llama_dir, tmp_path):
    r = streamscope.scan(llama_dir, out=tmp_path / "o", select="norm")
    assert json.loads((tmp_path / "o" / "model.json").read_text())["schema_version"] == 3
    assert r.model["options"]["histogram_bins"] == 256
    assert streamscope.params(llama_dir)["schema_version"] == 3
    assert len(streamscope.params_frame(llama_dir)) == 3  # a path works as well as a result


def test_format_seam_names_what_a_file_is(tmp_path):
    gguf = tmp_path / "model.q4"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    with pytest.raises(streamscope.CheckpointError, match="GGUF"):
        streamscope.open(gguf)
    pickled = tmp_path / "model.ckpt"
    pickled.write_bytes(b"\x80\x02}q\x00.")  # a protocol-2 pickle of {}, the legacy torch.save format
    with pytest.raises(streamscope.CheckpointError, match="legacy .*PyTorch pickle"):
        streamscope.open(pickled)
    renamed = save_tensors(tmp_path / "weights.bin.st", {"w": torch.ones(2, 3)})  # safetensors by its first bytes
    assert streamscope.open(renamed)["w"].shape == (2, 3)


# -- the import direction -------------------------------------------------------------------------------------------
# Rooms from left to right; a module imports only from rooms of a lower rank or from its own room.
# The top-level modules: errors, units, schema, text, environment, plotstyle, optionspec and progress import nothing of the
# package but each other (the base every room may use; progress is there because the engine, the activation engine and
# the report all show progress); results is the store the engine and the activation engine write and the report reads, so it sits between
# analyses and those engines; synthetic (checkpoint fixtures for tests and benchmarks) and bench sit with api and
# cli: library code never builds test checkpoints or runs benchmarks. activation is beside engine: neither
# imports the other.
PACKAGE = Path(streamscope.__file__).parent
ROOMS = {
    "streamscope.errors": "base", "streamscope.units": "base", "streamscope.schema": "base", "streamscope.text": "base",
    "streamscope.environment": "base", "streamscope.plotstyle": "base", "streamscope.optionspec": "base",
    "streamscope.progress": "base",
    "streamscope.io": "io",
    "streamscope.kernels": "kernels",
    "streamscope.analyses": "analyses",
    "streamscope.results": "results", "streamscope.results_dir": "results",
    "streamscope.engine": "engine",
    "streamscope.activation": "activation",
    "streamscope.report": "report",
    "streamscope.synthetic": "entry", "streamscope.bench": "entry", "streamscope.api": "entry", "streamscope.cli": "entry",
    "streamscope.__main__": "entry", "streamscope": "entry",
}  # fmt: skip
RANK = {"base": 0, "io": 1, "kernels": 2, "analyses": 3, "results": 4, "engine": 5, "activation": 5, "report": 6, "entry": 7}

# Known imports against the direction, each with the reason it is still there. Every entry must still occur
# (a fixed one is removed from this list), and no new one may appear. None now.
ALLOWED: set = set()
# Private names (a leading underscore) imported from another room, with the reason for each (none now).
ALLOWED_PRIVATE: set = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every ``streamscope`` name imported by the file at ``path``, at any depth (inside functions too)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return [(name, line) for name, line in found if name == "streamscope" or name.startswith("streamscope.")]


def _room(name: str) -> str:
    while name not in ROOMS:
        name = name.rpartition(".")[0]
    return ROOMS[name]


def _import_graph() -> list[tuple[str, str, int]]:
    return [(_module_name(p), name, line) for p in sorted(PACKAGE.rglob("*.py")) for name, line in _imports(p)]


def _target_module(name: str) -> str:
    """``streamscope.results._atomic`` -> ``streamscope.results``: the longest prefix that is a module file."""
    while name != "streamscope":
        rel = Path(*name.split(".")[1:])
        if (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file():
            return name
        name = name.rpartition(".")[0]
    return name



def test_imports_flow_left_to_right():
    """io -> kernels -> analyses -> results -> engine | activation -> report -> api/cli, read from every module's
    imports (those inside functions too)."""
    against, seen = [], set()
    for source, name, line in _import_graph():
        a, b = _room(source), _room(name)
        if a == b or RANK[b] < RANK[a]:
            continue
        pair = (source, _target_module(name))
        seen.add(pair)
        if pair not in ALLOWED:
            against.append(f"{source}:{line} ({a}) imports {name} ({b})")
    assert not against, "imports against the direction io -> kernels -> analyses -> engine -> report -> api/cli:\n" + "\n".join(against)
    assert ALLOWED <= seen, f"no longer imported, remove from ALLOWED: {ALLOWED - seen}"


def test_no_private_name_crosses_a_room():
    against, seen = [], set()
    for source, name, line in _import_graph():
        last = name.rpartition(".")[2]
        if not last.startswith("_") or last.startswith("__") or _room(source) == _room(name):
            continue
        seen.add((source, name))
        if (source, name) not in ALLOWED_PRIVATE:
            against.append(f"{source}:{line} imports the private {name}")
    assert not against, "\n".join(against)
    assert ALLOWED_PRIVATE <= seen, f"no longer imported, remove from ALLOWED_PRIVATE: {ALLOWED_PRIVATE - seen}"


def test_the_import_reader_sees_what_it_must(tmp_path):
    """The reader itself: imports inside functions, relative imports, and a violation are all found."""
    fake = PACKAGE / "io" / "_arch_probe_tmp.py"
    try:
        fake.write_text("def f():\n    from ..report import labels\n    import streamscope.engine.pipeline\n")
        found = {n for n, _ in _imports(fake)}
    finally:
        fake.unlink()
    assert found == {"streamscope.report.labels", "streamscope.engine.pipeline"}
    assert _room("streamscope.report.labels") == "report" and _room("streamscope.io.hub") == "io"
    assert _target_module("streamscope.results._atomic") == "streamscope.results"


TUNED = ("OMP_WAIT_POLICY", "THP_MEM_ALLOC_ENABLE", "MKL_DISABLE_FAST_MM")


def _bare_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in TUNED}


def test_import_leaves_the_environment_alone():
    """A library does not change its host's environment: not on import, not when the API or the CLI module loads."""
    code = textwrap.dedent("""
        import os
        before = dict(os.environ)
        import streamscope, streamscope.api, streamscope.cli, streamscope.engine.pipeline, torch
        streamscope.open  # the lazy API
        print(before == dict(os.environ))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_bare_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_the_command_line_sets_the_settings_before_torch():
    """The entry point (``streamscope``, ``python -m streamscope``) tunes the environment before the command imports
    torch; a value the user set is kept."""
    code = textwrap.dedent("""
        import json, os, sys
        import streamscope.cli
        streamscope.cli.app = lambda: print(json.dumps({"torch": "torch" in sys.modules, **{k: os.environ.get(k) for k in %r}}))
        from streamscope.__main__ import main
        main()
    """ % (TUNED,))
    env = {**_bare_env(), "MKL_DISABLE_FAST_MM": "0"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {"torch": False, "OMP_WAIT_POLICY": "PASSIVE", "THP_MEM_ALLOC_ENABLE": "1", "MKL_DISABLE_FAST_MM": "0"}


# -- io owns the format decisions ------------------------------------------------------------------------------------
def _format_decisions(source: str) -> list[tuple[str, int]]:
    """Where code asks whether a tensor is stored plain (``x.plain``, not a call) or reaches a format's decoder
    (``read_float``, ``FORMATS``): the choices that belong to ``io`` alone."""
    found = []
    tree = ast.parse(source)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "plain" and id(node) not in called:
            found.append((".plain", node.lineno))
        elif isinstance(node, ast.Attribute) and node.attr in ("read_float", "FORMATS"):
            found.append((node.attr, node.lineno))
        elif isinstance(node, ast.Name) and node.id in ("read_float", "FORMATS"):
            found.append((node.id, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            found += [(a.name, node.lineno) for a in node.names if a.name in ("read_float", "FORMATS")]
    return found


def test_only_io_chooses_how_a_format_is_read():
    """Plain or decoded is decided behind io's reader (``RawReader.blocks``, ``column_slab``, ``read_rows``)."""
    outside = [p for p in sorted(PACKAGE.rglob("*.py")) if (PACKAGE / "io") not in p.parents]
    found = [f"{p.relative_to(PACKAGE)}:{line} uses {what}" for p in outside for what, line in _format_decisions(p.read_text(encoding="utf-8"))]
    assert not found, "format decisions outside io:\n" + "\n".join(found)
    sample = "from streamscope.io.formats import FORMATS\nif info.plain:\n    x = FORMATS[info.format].read_float(info, b)\nlabels.plain(s)\n"
    assert sorted(w for w, _ in _format_decisions(sample)) == [".plain", "FORMATS", "FORMATS", "read_float"]  # not labels.plain()


# -- analyses see the context, not the engine ------------------------------------------------------------------------
ENGINE_REACH = re.compile(r"\bctx\.runner\b|\.runner\.|\bctx\._")


def test_analyses_do_not_reach_into_the_engine():
    """An analysis uses ``ctx``'s documented fields and methods (``ctx.buffer``, ``ctx.native``...), never the runner."""
    found = [f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}" for p in sorted((PACKAGE / "analyses").rglob("*.py"))
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if ENGINE_REACH.search(line)]  # fmt: skip
    assert not found, "analyses reaching into the engine:\n" + "\n".join(found)
    assert ENGINE_REACH.search("ctx.runner.kernel.buffer") and ENGINE_REACH.search("x = c.runner.options.native")
    assert not ENGINE_REACH.search("ctx.buffer('k', 4, dtype) if ctx.native else None")
