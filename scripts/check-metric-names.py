#!/usr/bin/env python3
"""Metric names agree across the code, the book and what deploy/ ships.

- Every instrument the code creates (`"bot.…"` given to a meter's builder) is named in the book.
- Every series the Grafana dashboard and the Prometheus alert rules query is one the code
  exports, as Prometheus names it (dots as underscores, `_total` on counters, the unit and
  `_bucket`/`_sum`/`_count` on histograms).
- The dashboard is valid JSON.

    python3 scripts/check-metric-names.py
"""
import json
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
code = set()
# An instrument: a meter builder's name argument, written on its own line or right after the call.
builder = re.compile(r'(?:counter|gauge|histogram|up_down_counter|observe)(?:::<[^>]*>)?\(\s*"(bot\.[a-z_.]+)"')
for crate in sorted(root.glob("bot-*/src")):
    for path in crate.rglob("*.rs"):
        code.update(builder.findall(path.read_text()))
if len(code) < 20:
    sys.exit(f"metrics: found only {len(code)} instruments in the code; the pattern is out of date")

book = "\n".join(p.read_text() for p in (root / "book/src").rglob("*.md"))
failures = [f"book: `{name}` is exported but named nowhere in the book" for name in sorted(code)
            if f"`{name}`" not in book and f"`{name}{{" not in book]

def base(series):
    """The instrument a Prometheus series comes from, with dots as underscores."""
    for suffix in ("_bucket", "_sum", "_count"):
        if series.endswith(suffix):
            series = series[: -len(suffix)]
    for suffix in ("_total", "_seconds", "_bytes", "_ratio"):
        if series.endswith(suffix):
            series = series[: -len(suffix)]
    return series

known = {name.replace(".", "_") for name in code}
dashboard = root / "deploy/grafana/botrt.json"
try:
    json.loads(dashboard.read_text())
except ValueError as e:
    failures.append(f"{dashboard.relative_to(root)}: not JSON: {e}")
queried = 0
for path in [dashboard, *sorted((root / "deploy/prometheus").glob("*.yml"))]:
    for series in sorted(set(re.findall(r"\bbot_[a-z_]+", path.read_text()))):
        queried += 1
        if base(series) not in known and series not in known:
            failures.append(f"{path.relative_to(root)}: {series} is not a metric the code exports")

for failure in failures:
    print(failure, file=sys.stderr)
if failures:
    sys.exit(1)
print(f"metrics: {len(code)} instruments named in the book; {queried} series in deploy/ exported")
