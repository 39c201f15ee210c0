"""Hub ids: ``Qwen/Qwen2.5-7B``, ``hf://Qwen/Qwen2.5-7B@main`` resolved through ``huggingface_hub``.

- ``resolve`` downloads what a command needs (``snapshot_download``: safetensors, JSON and tokenizer files, or a
  repo's PyTorch weights or its one GGUF file where it has no safetensors, ``weights_of``; nothing when the
  snapshot is cached) and returns the local snapshot with its provenance.
- ``remote_index`` reads only the safetensors headers with HTTP range requests (8 bytes, then the header) plus
  the small JSON files, so ``params`` of a 72B model transfers kilobytes; it counts the bytes it fetched.
- A hub-cache snapshot given as a path (``models--org--name/snapshots/<rev>/``) carries the same provenance.

``HF_ENDPOINT`` points at another hub (the tests run a local stand-in), ``HF_HUB_OFFLINE=1`` uses the cache only.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from streamscope.errors import CheckpointError

REPO_ID = re.compile(r"^(?:hf://)?([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(.*))?$", re.DOTALL)  # the revision: see check_revision
#: What ``scan``-like commands download of a repo.
ALLOW = ["*.safetensors", "*.json", "tokenizer*", "*.model", "vocab.*", "merges.txt"]
_CACHE_SNAPSHOT = re.compile(r"models--([^/]+)--([^/]+)/snapshots/([0-9a-f]{7,64})/?$")


_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # control characters and spaces


def check_revision(repo: str, revision: str | None) -> str | None:
    """``revision`` when it is a usable hub revision (a branch, tag, commit or ``refs/pr/N``), as huggingface_hub
    accepts them: no empty or ``..`` part, no leading ``/``, no backslash or control character.

    Raises:
        CheckpointError: naming the repo and the revision; the revision would otherwise name a path of the hub
            cache (``@/any/file``, ``@../../x``) rather than a ref.
    """
    if revision is None:
        return None
    parts = revision.split("/")
    if (not revision or revision.startswith("/") or "\\" in revision or _CONTROL.search(revision)
            or any(p in ("", ".", "..") for p in parts)):  # fmt: skip
        raise CheckpointError(f"{repo}: invalid revision {revision!r}: a revision is a branch, tag or commit (or refs/pr/N), "
                              "without a leading '/', empty, '.' or '..' parts, backslashes, spaces or control characters")  # fmt: skip
    return revision


def parse(text: str | Path) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` when ``text`` names a hub repo rather than an existing local path.

    Raises:
        CheckpointError: the text names a repo with an invalid revision (see ``check_revision``), or reads as a
            mistyped local path: ``models/x`` where ``models/`` exists but holds no ``x`` (``hf://models/x``: the repo).
    """
    s = str(text)
    if Path(s).expanduser().exists() and not s.startswith("hf://"):
        return None
    m = REPO_ID.match(s)
    if m and not s.startswith("hf://") and m.group(2) is None:
        mistyped = _mistyped_path(s)
        if mistyped:
            raise mistyped
    return (m.group(1), check_revision(m.group(1), m.group(2))) if m else None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def provenance(path: Path, repo: str | None = None, revision: str | None = None) -> dict:
    """``model_id``, ``revision`` (a commit) and ``created_at`` (this run); a hub-cache path names its repo."""
    m = _CACHE_SNAPSHOT.search(str(path.resolve() if path.exists() else path).replace("\\", "/"))
    if repo is None and m:
        repo, revision = f"{m.group(1)}/{m.group(2)}", m.group(3)
    return {"model_id": repo, "revision": revision, "created_at": now()}


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def first_sentence(text: str, most: int = 160) -> str:
    """The first sentence of ``text``'s first line, cut at a word (with ``…``) when longer than ``most``."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    m = re.search(r"[.!?](\s|$)", line)
    sentence = line[: m.start() + 1] if m else line
    if len(sentence) <= most:
        return sentence
    return sentence[:most].rsplit(" ", 1)[0].rstrip(",;:") + " …"


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _why(repo: str, e: Exception) -> tuple[str, str, str | None]:
    """``(cause, what to do, hint)`` of a hub failure, in words that do not depend on huggingface_hub's."""
    from huggingface_hub import errors as hf

    if _offline() and any(isinstance(x, (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError)) for x in _chain(e)):
        return ("offline mode: HF_HUB_OFFLINE is set and the hub cache holds no snapshot of it", "use a local path, or unset HF_HUB_OFFLINE to download it",
                None)  # fmt: skip
    if isinstance(e, hf.GatedRepoError):
        return "a gated repo: its terms are not accepted for this account", "accept them on the hub and log in (hf auth login), or use a local path", None
    if isinstance(e, hf.RepositoryNotFoundError):
        return "no such repo, or a private one", "check the repo id (org/name) and your login (hf auth login), or use a local path", None
    if isinstance(e, hf.RevisionNotFoundError):
        return "no such revision", "give an existing branch, tag or commit with --revision, or use a local path", None
    chain = list(_chain(e))
    root = next((x for x in chain if "Connect" in type(x).__name__ or "Timeout" in type(x).__name__), chain[-1])
    text = first_sentence(str(root))
    cause = f"{type(root).__name__}: {text}" if text else type(root).__name__
    if isinstance(e, hf.LocalEntryNotFoundError) or any(isinstance(x, (OSError, urllib.error.URLError)) or "Connect" in type(x).__name__ for x in _chain(e)):
        return (f"cannot be reached: {cause}", "use a local path, or a snapshot already in the hub cache (with HF_HUB_OFFLINE=1)",
                f"`streamscope download {repo}` fetches it into the hub cache where the hub can be reached")  # fmt: skip
    return cause, "use a local path, or check the repo id and revision", None


def _hub_error(repo: str, e: Exception) -> CheckpointError:
    from huggingface_hub import constants

    cause, fix, hint = _why(repo, e)
    err = CheckpointError(f"{repo}: no such local path, and the hub at {constants.ENDPOINT} cannot give it ({cause}); {fix}")
    err.hint = hint  # not the generic "give a checkpoint file" hint: the problem is the hub
    return err


def _mistyped_path(text: str) -> CheckpointError | None:
    """An error for ``dir/name`` where ``dir`` is a local directory and ``name`` is not in it: a path with a typo far
    more likely than a hub repo (``hf://dir/name`` asks for the repo)."""
    first, _, rest = text.partition("/")
    base = Path(first).expanduser()
    if not rest or not base.is_dir():
        return None
    import difflib

    near = difflib.get_close_matches(rest, [p.name for p in base.iterdir()], n=1)
    guess = f"; did you mean {first}/{near[0]}?" if near else ""
    err = CheckpointError(f"{text}: no such file or directory (the directory {first}/ exists, {rest} is not in it){guess}")
    err.hint = f"for the hub repo of that name, write hf://{text}"
    return err


def weights_of(repo: str, revision: str | None) -> list[str]:
    """What to download of ``repo``: its safetensors where it has them, else its PyTorch weights, else its one
    GGUF file (a repo of several GGUF files, one per quantization, is an error that says how to take one), with
    the configs and tokenizer files. Without an answer from the hub (offline, unknown repo): ``ALLOW``, and
    ``snapshot_download`` reports the problem or takes the cache."""
    try:
        from huggingface_hub import HfApi

        files = [s.rfilename for s in HfApi().model_info(repo, revision=revision).siblings or []]
    except Exception:  # noqa: BLE001 - the download that follows reports it
        return ALLOW
    if any(f.endswith(".safetensors") for f in files):
        return ALLOW
    torch_files = [f for f in files if f.endswith((".bin", ".pt", ".pth")) and "/" not in f]
    if torch_files:
        return ALLOW + torch_files
    ggufs = [f for f in files if f.endswith(".gguf")]
    if len(ggufs) > 1:
        shown = ", ".join(ggufs[:4]) + (f" and {len(ggufs) - 4} more" if len(ggufs) > 4 else "")
        err = CheckpointError(f"{repo}: holds {len(ggufs)} GGUF files and no safetensors ({shown}); one of them is a checkpoint")
        err.hint = f"download the one you want, `streamscope download {repo} --include '{ggufs[0]}'`, and give its path"
        raise err
    return ALLOW + ggufs


def resolve(text: str | Path, revision: str | None = None, allow: list[str] | None = None, local_dir: str | Path | None = None,
            progress: bool = True) -> tuple[Path, dict]:  # fmt: skip
    """A local checkpoint path for ``text`` (downloaded when it is a repo id) and its provenance."""
    parsed = parse(text)
    if parsed is None:
        path = Path(text).expanduser()
        return path, provenance(path)
    repo, rev = parsed
    rev = check_revision(repo, revision) or rev
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if progress else disable_progress_bars)()
    patterns = allow or weights_of(repo, rev)  # its own error (several GGUF files) is not the hub's
    try:
        local = Path(snapshot_download(repo, revision=rev, allow_patterns=patterns, local_dir=local_dir))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, HTTP errors: one line
        raise _hub_error(repo, e) from e
    commit = local.name if re.fullmatch(r"[0-9a-f]{40}", local.name) else rev
    return local, {"model_id": repo, "revision": commit, "created_at": now()}


def _fetch(url: str, start: int | None = None, stop: int | None = None) -> tuple[bytes, dict]:
    from huggingface_hub.utils import build_hf_headers

    headers = dict(build_hf_headers())
    headers["Accept-Encoding"] = "identity"
    if start is not None:
        headers["Range"] = f"bytes={start}-{stop - 1}"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the hub endpoint the user chose
        return response.read(), {k.lower(): v for k, v in response.headers.items()}


def remote_index(text: str, revision: str | None = None):
    """A ``CheckpointIndex`` of a hub repo from its safetensors headers alone (no tensor byte is fetched).

    Returns:
        ``(index, provenance)``; ``provenance["bytes_transferred"]`` counts every byte fetched.
    """
    from huggingface_hub import hf_hub_url

    from streamscope.io.checkpoint import CheckpointIndex
    from streamscope.io.names import classify
    from streamscope.io.safetensors import MAX_HEADER_BYTES, SafetensorsFile

    parsed = parse(text) or (str(text), None)
    repo, rev = parsed
    rev = check_revision(repo, revision) or rev or "main"
    fetched = 0
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo, revision=rev)
        commit = info.sha or rev
        files = sorted(s.rfilename for s in info.siblings or [])

        def get_json(name: str) -> dict | None:
            nonlocal fetched
            if name not in files:
                return None
            data, _ = _fetch(hf_hub_url(repo, name, revision=commit))
            fetched += len(data)
            value = json.loads(data)
            return value if isinstance(value, dict) else None

        config = get_json("config.json")
        index_name = next((f for f in files if f.endswith(".safetensors.index.json")), None)
        weight_map = (get_json(index_name) or {}).get("weight_map") if index_name else None
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else [f for f in files if f.endswith(".safetensors")]
        if not shards:
            other = [f for f in files if f.endswith((".gguf", ".bin", ".pt", ".pth"))]
            found = f"; it holds {', '.join(other[:3])}{', …' if len(other) > 3 else ''}" if other else ""
            err = CheckpointError(f"{repo}@{rev}: the repo holds no .safetensors file, whose headers alone are read over the hub{found}")
            err.hint = (f"download the file you want (streamscope download {repo} --include '{other[0]}') and give its local path" if other
                        else None)  # fmt: skip
            raise err
        parsed_files = []
        for shard in shards:
            url = hf_hub_url(repo, shard, revision=commit)
            prefix, headers = _fetch(url, 0, 8)
            n = int.from_bytes(prefix, "little")
            size = int(headers.get("content-range", "/0").rsplit("/", 1)[-1] or 0)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise CheckpointError(f"hf://{repo}@{commit}/{shard}: header length {n} does not fit the {size}-byte file")
            raw, _ = _fetch(url, 8, 8 + n)
            fetched += len(prefix) + len(raw)
            parsed_files.append(SafetensorsFile.from_header(Path(f"hf://{repo}@{commit}/{shard}"), raw, size))
    except CheckpointError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise _hub_error(repo, e) from e
    except Exception as e:  # noqa: BLE001 - huggingface_hub's own errors (repo or revision not found, HTTP)
        raise _hub_error(repo, e) from e
    tensors = {}
    for f in parsed_files:
        for t in sorted(f.tensors.values(), key=lambda t: t.begin):
            tensors.setdefault(t.name, t)
    index = CheckpointIndex(Path(f"hf://{repo}@{commit}"), Path(f"hf://{repo}@{commit}"), parsed_files, tensors, config, None,
                            {n: classify(n) for n in tensors})  # fmt: skip
    return index, {"model_id": repo, "revision": commit, "created_at": now(), "bytes_transferred": fetched, "remote": True}
