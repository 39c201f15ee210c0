"""``report.html``: one self-contained page that opens offline.

Every value from the results goes into the page through ``_e`` (HTML-escaped, quotes too), numbers as well: a
results directory is a file a user may have edited or received, never markup.

Figures are inlined as base64 PNG; nothing on the page points to the network. A little inline JavaScript sorts
the tensor table (click a column header; ``#sort=COLUMN`` or ``#sort=-COLUMN`` in the address does it on load)
and filters it, and records on ``<body>`` how many figures the browser decoded (``data-images-loaded``) and
every resource the page fetched (``data-fetched``: ``0`` for a page that fetched nothing).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from streamscope.report.figures import Rendered

#: Columns of the tensor table: (header, section, key).
COLUMNS = (("layer", "info", "layer_index"), ("type", "info", "block_type"), ("shape", "info", "shape"), ("dtype", "info", "dtype"),
           ("std", "basic_stats", "std"), ("abs max", "basic_stats", "abs_max"), ("zeros %", "basic_stats", "zeros_percentage"),
           ("κ", "spectral", "condition_number"), ("stable rank", "spectral", "stable_rank"), ("alpha", "spectral", "alpha"),
           ("INT8 SQNR", "quantization", "sqnr_db"), ("outliers %", "quantization", "extreme_outlier_percentage"),
           ("grade", "health", "grade"))  # fmt: skip
SECTIONS = (("summary", "Summary"), ("weights", "Weights"), ("embeddings", "Embeddings"), ("activations", "Activations"),
            ("sensitivity", "Sensitivity"), ("details", "Tensor details"))  # fmt: skip

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#cfd8dc}
nav{padding:8px 28px;background:#eceff1;position:sticky;top:0;z-index:2}nav a{margin-right:16px;color:#37474f}
main{padding:8px 28px 40px}section{margin-top:28px}h2{border-bottom:2px solid #cfd8dc;padding-bottom:4px}
figure{margin:18px 0;background:#fff;padding:10px;border:1px solid #e0e0e0}figure img{max-width:100%;height:auto}
figcaption{font-size:13px;color:#555;margin-top:6px}.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #e0e0e0;padding:10px 16px;min-width:150px}.card b{display:block;font-size:20px}
table{border-collapse:collapse;font-size:12px;background:#fff}th,td{border:1px solid #e0e0e0;padding:3px 6px;text-align:right}
th{background:#eceff1;cursor:pointer;position:sticky;top:38px}td.name,th.name{text-align:left}td.text{text-align:left}
.Excellent{color:#2e7d32}.Good{color:#558b2f}.Warning{color:#e65100}.Critical{color:#c62828;font-weight:bold}
#filter{margin:8px 0;padding:4px 8px;width:320px}details{margin:6px 0}
"""

_SCRIPT = """
(function(){
  var table=document.getElementById('tensors'), body=table&&table.tBodies[0];
  function key(td){var v=td.getAttribute('data-v');var x=parseFloat(v);return isNaN(x)?v:x}
  function sortBy(col,desc){
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
      if(typeof x!==typeof y){x=String(x);y=String(y)} return (x<y?-1:x>y?1:0)*(desc?-1:1)});
    rows.forEach(function(r){body.appendChild(r)});
    table.setAttribute('data-sorted',table.tHead.rows[0].cells[col].getAttribute('data-col')+(desc?':desc':''));
  }
  if(table){  // a page without the tensor table (activations or sensitivity alone) still counts its figures
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    th.addEventListener('click',function(){var d=th.getAttribute('data-desc')==='1';th.setAttribute('data-desc',d?'0':'1');sortBy(i,!d)})});
  document.getElementById('filter').addEventListener('input',function(e){var q=e.target.value.toLowerCase();
    Array.prototype.forEach.call(body.rows,function(r){r.style.display=r.cells[0].textContent.toLowerCase().indexOf(q)<0?'none':''})});
  var m=/sort=(-?)([^&]+)/.exec(location.hash);
  if(m){var hs=table.tHead.rows[0].cells;for(var i=0;i<hs.length;i++){if(hs[i].getAttribute('data-col')===decodeURIComponent(m[2])){sortBy(i,m[1]==='-')}}}}
  function count(){var imgs=document.images,n=0;for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0)n++}
    document.body.setAttribute('data-images-loaded',n+'/'+imgs.length);
    var fetched=(performance.getEntriesByType?performance.getEntriesByType('resource'):[]).map(function(r){return r.name});
    document.body.setAttribute('data-fetched',fetched.length+(fetched.length?' '+fetched.join(' '):''))}
  if(document.readyState==='complete'){count()}else{window.addEventListener('load',count)}
})();
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _num(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.4g}"
    if isinstance(v, list):
        return "x".join(map(str, v))
    return str(v)


def _sort_value(v) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return repr(float(v)) if math.isfinite(v) else ("1e308" if v > 0 else "-1e308")
    if isinstance(v, list):
        return repr(float(math.prod(v))) if v else "0"
    return "" if v is None else str(v)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _summary(results) -> str:
    ck = results.model.get("checkpoint", {})
    health = results.model.get("health") or {}
    timing = results.model.get("timing", {})
    cards = [("parameters", f"{ck.get('total_params', 0):,}"), ("tensors", f"{ck.get('num_scanned', len(results.tensors))} of {ck.get('num_tensors', '?')}"),
             ("size", f"{ck.get('total_bytes', 0) / 1e9:.2f} GB"), ("model type", ck.get("model_type") or "–"),
             ("scan time", f"{timing.get('seconds', 0):.1f} s")]  # fmt: skip
    cards += [(g, str(n)) for g, n in (health.get("counts") or {}).items()]
    out = ['<div class="cards">'] + [f'<div class="card">{_e(k)}<b>{_e(v)}</b></div>' for k, v in cards] + ["</div>"]
    dtypes = ck.get("params_by_dtype") or {}
    if dtypes:
        total = sum(dtypes.values()) or 1
        out.append("<p>dtype mix: " + ", ".join(f"{_e(d)} {100 * n / total:.1f}%" for d, n in dtypes.items()) + "</p>")
    risky = health.get("riskiest") or []
    if risky:
        out.append("<h3>Ten riskiest tensors</h3><table><tr><th class=name>tensor</th><th>grade</th><th class=name>why</th></tr>")
        for r in risky:
            out.append(f'<tr><td class=name>{_e(r["name"])}</td><td class="{_e(r["grade"])}">{_e(r["grade"])}</td>'
                       f'<td class=text>{_e("; ".join(r["reasons"]))}</td></tr>')  # fmt: skip
        out.append("</table>")
    for s in results.model.get("skipped") or []:
        out.append(f"<p>skipped: {_e(s['name'])}: {_e(s['reason'])}</p>")
    for err in results.model.get("errors") or []:
        out.append(f"<p class=Critical>error: {_e(err)}</p>")
    return "\n".join(out)


def _embeddings_table(results) -> str:
    emb = results.model.get("embedding") or {}
    if not emb:
        return ""
    rows = ["<table><tr><th class=name>matrix</th><th>vocab x dim</th><th>mean norm</th><th>std</th><th>min</th><th>max</th>"
            "<th class=name>largest-norm tokens</th><th class=name>smallest-norm tokens</th></tr>"]  # fmt: skip
    tok = lambda rows: ", ".join(repr(r["token"]) if r.get("token") is not None else f"#{r['id']}" for r in rows[:5])  # noqa: E731
    for n, e in emb.items():
        rows.append(f"<tr><td class=name>{_e(n)}</td><td>{_e(e['vocab_size'])} x {_e(e['embedding_dim'])}</td><td>{_e(_num(e['norm_mean']))}</td>"
                    f"<td>{_e(_num(e['norm_std']))}</td><td>{_e(_num(e['norm_min']))}</td><td>{_e(_num(e['norm_max']))}</td>"
                    f"<td class=text>{_e(tok(e['largest']))}</td><td class=text>{_e(tok(e['smallest']))}</td></tr>")  # fmt: skip
    return "\n".join(rows) + "</table>"


def _clusters_table(results) -> str:
    studies = (results.embeddings or {}).get("clusters") or {}
    out = []
    for name, c in studies.items():
        out.append(f"<h3>{_e(name)}: k = {_e(c['k'])} ({_e(c['metric'])}; {_e(c['k_rule'])})</h3>")
        out.append("<table><tr><th>cluster</th><th>size</th><th>mean norm</th><th class=name>tokens nearest the centroid</th>"
                   "<th class=name>random members</th></tr>")  # fmt: skip
        tok = lambda rows: ", ".join(repr(t["token"]) if t.get("token") is not None else f"#{t['id']}" for t in rows)  # noqa: E731
        for cl in c["clusters"]:
            out.append(f"<tr><td>{_e(cl['id'])}</td><td>{_e(cl['size'])}</td><td>{_e(_num(cl['mean_norm']))}</td>"
                       f"<td class=text>{_e(tok(cl['tokens']))}</td><td class=text>{_e(tok(cl['random_members']))}</td></tr>")  # fmt: skip
        out.append("</table>")
    return "\n".join(out)


def _tensor_table(results) -> str:
    head = '<th class=name data-col="tensor">tensor</th>' + "".join(f'<th data-col="{_e(k)}">{_e(h)}</th>' for h, _, k in COLUMNS)
    rows = []
    for name, rec in results.tensors.items():
        cells = [f'<td class=name data-v="{_e(name)}">{_e(name)}</td>']
        for _, section, key in COLUMNS:
            v = (rec.get(section) or {}).get(key)
            cls = f' class="text {_e(v)}"' if key == "grade" and v else (" class=text" if isinstance(v, str) else "")
            cells.append(f'<td{cls} data-v="{_e(_sort_value(v))}">{_e(_num(v))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<input id="filter" placeholder="filter by name (e.g. layers.3. or down_proj)">'
            f'<table id="tensors"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')  # fmt: skip


def _fact(value) -> str:
    """A run fact as a reader wants it: ``-`` for none, floats to four significant digits, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fact(v) for v in value)
    return str(value)


def _activations_summary(results) -> str:
    act = results.activations
    if not act:
        return ""
    run = act["run"]
    cards = [("samples", f"{run['num_samples']} x {run['seq_len']} tokens"), ("source", run["source"]), ("compute", f"{run['dtype']} on {run['device']}"),
             ("layers", f"{run['n_layers']} ({run['decoder_layers']})"), ("read", f"{run['bytes_read'] / 1e9:.2f} of {run['checkpoint_bytes'] / 1e9:.2f} GB"),
             ("peak RSS", f"{run['peak_rss_bytes'] / 2**30:.2f} GiB"), ("time", f"{run['seconds']:.1f} s")]  # fmt: skip
    out = ['<div class="cards">'] + [f'<div class="card">{_e(k)}<b>{_e(v)}</b></div>' for k, v in cards] + ["</div>"]
    o = act.get("outliers") or {}
    total = sum(r["count"] for r in (o.get("layers") or {}).values())
    chans = ", ".join(f"{c} ({n})" for c, n in list((o.get("massive_channels") or {}).items())[:10]) or "none"
    out.append(f"<p>Outlier tokens (|x| &gt; {_e(o.get('threshold'))} x median, modules <code>{_e(o.get('pattern'))}</code>): {_e(total)}. "
               f"Channels most often among them (occurrences): {_e(chans)}. Files: activations.json, activations.csv, outliers.csv, "
               "act_scales.pt (SmoothQuant), imatrix.gguf (llama.cpp).</p>")  # fmt: skip
    return "".join(out)


def _sensitivity_summary(results) -> str:
    from streamscope.report.sensitivity_data import of, summary_lines

    return "".join(f"<p>{_e(line)}</p>" for line in summary_lines(of(results)))


def write_report(results, figures_dir: Path, rendered: list[Rendered], path: Path) -> Path:
    """Write the self-contained HTML report of ``results`` with the ``rendered`` figures inlined."""
    by_section: dict[str, list[Rendered]] = {}
    for r in rendered:
        by_section.setdefault(r.section, []).append(r)
    parts = []
    extra = {"summary": _summary(results) if results.tensors else "", "embeddings": _embeddings_table(results) + _clusters_table(results),
             "activations": _activations_summary(results), "sensitivity": _sensitivity_summary(results)}  # fmt: skip
    nav = []
    for key, title in SECTIONS:
        figs = by_section.get(key, [])
        body = extra.get(key, "")
        if not figs and not body:
            continue
        nav.append(f'<a href="#{key}">{_e(title)}</a>')
        items = []
        for r in figs:
            item = f"<figure>{_img(figures_dir / r.path, r.title)}<figcaption>{_e(r.title)} ({_e(r.path.as_posix())})</figcaption></figure>"
            items.append(f"<details><summary>{_e(r.title)}</summary>{item}</details>" if key == "details" else item)
        parts.append(f'<section id="{key}"><h2>{_e(title)}</h2>{body}{"".join(items)}</section>')
    nav += (['<a href="#table">All tensors</a>'] if results.tensors else []) + ['<a href="#run">Run</a>']
    if results.tensors:
        parts.append(f'<section id="table"><h2>All tensors ({len(results.tensors)})</h2><p>Click a column header to sort.</p>{_tensor_table(results)}</section>')
    options = results.model.get("options") or (results.embeddings or {}).get("options") or {}
    timing = (results.model.get("timing") or (results.embeddings or {}).get("timing") or (results.activations or {}).get("run")
              or (getattr(results, "sensitivity", None) or {}).get("run") or {})  # fmt: skip
    run = "".join(f"<tr><td class=name>{_e(k)}</td><td class=text>{_e(_fact(v))}</td></tr>" for k, v in {**options, **timing}.items()
                  if not isinstance(v, dict))  # fmt: skip
    parts.append(f'<section id="run"><h2>Run</h2><table>{run}</table></section>')
    title = f"streamscope report: {results.model.get('model_path', results.path)}"
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f'<body><header><h1>{_e(title)}</h1><p>schema {_e(results.model.get("schema_version", 1))} · results in {_e(results.path)}</p></header>'
            f'<nav>{"".join(nav)}</nav><main>{"".join(parts)}</main><script>{_SCRIPT}</script></body></html>')  # fmt: skip
    path.write_text(page, encoding="utf-8")
    return path
