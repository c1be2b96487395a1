#!/usr/bin/env python3
"""Draws the panels of botrt.json from a live Prometheus, for a screenshot without Grafana.

    python3 deploy/grafana/render.py http://127.0.0.1:9090 START END out.html "caption"

START and END are Unix seconds. Every panel's queries are the dashboard's own, with `$job` as
`.*` and `$__rate_interval` as 30s, sent to Prometheus' HTTP API (query_range); the answers are
drawn as Grafana lays the panels out (24 columns). Then, for example:

    chromium --headless=new --screenshot=dashboard.png --window-size=1600,1300 out.html
"""
import html
import json
import math
import sys
import urllib.parse
import urllib.request

COLORS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a"]
ROW_PX, COL_PX = 30, 1560 / 24


def query_range(prom, expr, start, end, step):
    args = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{args}", timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise SystemExit(f"prometheus refused {expr}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    if not fmt:
        return ", ".join(f"{k}={v}" for k, v in labels.items() if k not in ("job", "instance")) or "value"
    out = fmt
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    while "{{" in out:
        a, b = out.index("{{"), out.index("}}") + 2
        out = out[:a] + out[b:]
    return out.strip() or "value"


def fmt_value(value, unit):
    if value is None or math.isnan(value):
        return "–"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit in ("reqps", "ops"):
        return f"{value:.1f}/s" if value >= 1 or value == 0 else f"{value:.3f}/s"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2f}".rstrip("0").rstrip(".")


def series_of(prom, panel, start, end, step):
    out = []
    for target in panel["targets"]:
        expr = target["expr"].replace('$job', '.*').replace("$__rate_interval", "30s")
        for result in query_range(prom, expr, start, end, step):
            points = [(float(t), float(v)) for t, v in result["values"] if v not in ("NaN", "+Inf", "-Inf")]
            out.append((legend(target.get("legendFormat", ""), result["metric"]), points))
    return out


def draw_timeseries(series, unit, w, h, start, end):
    top, left, bottom = 8, 56, 30
    plot_w, plot_h = w - left - 10, h - top - bottom - 18 * ((len(series) + 2) // 3)
    ymax = max([v for _, pts in series for _, v in pts] + [0.0]) or 1.0
    ymax *= 1.1
    parts = [f'<svg width="{w}" height="{h}">']
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y}" y2="{y}" stroke="#2c3235"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{html.escape(fmt_value(ymax * i / 4, unit))}</text>')
    for i in range(5):
        t = start + (end - start) * i / 4
        x = left + plot_w * i / 4
        label = f"-{(end - t) / 60:.0f} min" if t < end else "now"
        parts.append(f'<text x="{x}" y="{top + plot_h + 16}" text-anchor="middle">{label}</text>')
    for n, (name, pts) in enumerate(series):
        color = COLORS[n % len(COLORS)]
        if pts:
            path = " ".join(f"{left + plot_w * (t - start) / (end - start):.1f},{top + plot_h - plot_h * v / ymax:.1f}" for t, v in pts)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        lx, ly = 8 + (n % 3) * (w / 3), top + plot_h + 36 + 18 * (n // 3)
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="14" height="4" fill="{color}"/>')
        parts.append(f'<text x="{lx + 20}" y="{ly - 4}" class="legend">{html.escape(name[:40])}</text>')
    if not series:
        parts.append(f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" class="nodata">No data</text>')
    parts.append("</svg>")
    return "".join(parts)


def main():
    prom, start, end, out, caption = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
    board = json.load(open(__file__.rsplit("/", 1)[0] + "/botrt.json"))
    step = max(2, int((end - start) / 300))
    cells = []
    for panel in board["panels"]:
        g = panel["gridPos"]
        w, h = g["w"] * COL_PX - 8, g["h"] * ROW_PX - 8
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        series = series_of(prom, panel, start, end, step)
        if panel["type"] == "stat":
            last = [pts[-1][1] for _, pts in series if pts]
            body = f'<div class="stat">{html.escape(fmt_value(sum(last) if last else None, unit))}</div>'
        else:
            body = draw_timeseries(series, unit, w - 8, h - 30, start, end)
        cells.append(f'<div class="panel" style="left:{g["x"] * COL_PX}px;top:{g["y"] * ROW_PX}px;width:{w}px;height:{h}px">'
                     f'<div class="title">{html.escape(panel["title"])}</div>{body}</div>')
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #111217; color: #ccccdc; font: 12px Inter, system-ui, sans-serif; }}
header {{ padding: 10px 20px; font-size: 16px; }} header small {{ color: #8e8e8e; font-size: 12px; margin-left: 12px; }}
.grid {{ position: relative; margin: 0 20px; height: {rows * ROW_PX}px; }}
.panel {{ position: absolute; background: #181b1f; border: 1px solid #2c3235; border-radius: 4px; padding: 4px 8px; box-sizing: border-box; }}
.title {{ font-weight: 500; margin-bottom: 4px; }} .stat {{ font-size: 34px; color: #73bf69; text-align: center; margin-top: 12px; }}
svg text {{ fill: #8e8e8e; font-size: 10px; }} svg text.legend {{ fill: #ccccdc; font-size: 11px; }} svg text.nodata {{ font-size: 14px; }}
</style></head><body><header>{html.escape(board["title"])}<small>{html.escape(caption)}</small></header>
<div class="grid">{"".join(cells)}</div></body></html>"""
    open(out, "w").write(page)


if __name__ == "__main__":
    main()
