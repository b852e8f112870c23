"""`make previews`: renders docs/img/<uid>.png, a preview of each Grafana dashboard.

Grafana is not installable here, so this draws each dashboard with matplotlib from the same
queries Grafana would send, in the dashboard's own grid layout (titles, units, thresholds,
value mappings, legends):

1. brings up the local topology, tierwatch (poll interval 1 s), the demo workload
   (scripts/workload.py) and a real Prometheus scraping tierwatch every second with
   alerts/recording_rules.yml and alerts/alerting_rules.yml;
2. warms the cache for 30 s, then records the workload calm, then a burst of cache pressure
   + pool flooding, then calm again (`--minutes`, default 3);
3. evaluates every panel query over that window (query_range; instant for tables) and draws.

The alerting rules are loaded without their `for:` durations (as in
tests/dashboards/test_panels.py) so the "Firing alerts" table shows what the short run
triggers. `--data FILE` keeps the query results; `--redraw FILE` only draws from them.

Needs the `previews` extra: pip install -e '.[previews]' (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts import dashboards as gen  # noqa: E402

try:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib import ticker
    from matplotlib.patches import Rectangle
except ImportError:  # pragma: no cover - the `previews` extra is not installed
    sys.exit("previews: matplotlib missing: pip install -e '.[previews]'")

OUT_DIR = REPO / "docs" / "img"
RATE_INTERVAL = "15s"

# Grafana's dark theme
BG, PANEL_BG, BORDER, TEXT, MUTED, GRID = (
    "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e9a", "#24262b")
COLORS = {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c", "blue": "#5794f2",
          "purple": "#b877d9", "yellow": "#fade2a", "text": TEXT}
PALETTE = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a6",
           "#705da0", "#508642", "#cca300", "#447ebc", "#c15c17"]
COL_PX, ROW_PX, DPI = 66, 30, 100
GUTTER = 4  # px between panels


# --------------------------------------------------------------------------- collecting


def collect(minutes: float, warmup: float = 30.0) -> dict[str, Any]:
    """Runs the stack and returns {uid: {"start", "end", "panels": {id: [results]}}}."""
    import yaml

    from scripts.workload import Endpoints, Workload
    from tests.promstack import Prometheus
    from tests.support import DaemonProcess, wait_until
    from tests.topology import Topology

    rules = yaml.safe_load((REPO / "alerts" / "alerting_rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    total = minutes * 60
    with tempfile.TemporaryDirectory(prefix="tierwatch-previews-") as tmp:
        alerting = Path(tmp) / "alerting.yml"
        alerting.write_text(yaml.safe_dump(rules, sort_keys=False))
        print("previews: starting topology, tierwatch, Prometheus and the workload ...",
              flush=True)
        with Topology() as topo:
            daemon = DaemonProcess(topo.tierwatch_config(poll_interval=1.0))
            try:
                daemon.start()
                with Prometheus([f"127.0.0.1:{daemon.port}"], scrape_interval="1s",
                                rule_files=[REPO / "alerts" / "recording_rules.yml", alerting],
                                evaluation_interval="1s").start() as prom:
                    wait_until(prom.targets_up, 30, "Prometheus scraping tierwatch")
                    with Workload(Endpoints.from_topology(topo), rate=60, seed=6) as load:
                        print(f"previews: warming the cache for {warmup:.0f}s", flush=True)
                        time.sleep(warmup)  # not shown: a real cache is warm
                        start = time.time()
                        for label, seconds, on in (("calm", 0.4 * total, False),
                                                   ("cache pressure + pool flood",
                                                    0.3 * total, True),
                                                   ("calm again", 0.3 * total, False)):
                            print(f"previews: {label} for {seconds:.0f}s", flush=True)
                            load.set_knobs(cache_pressure=on, pool_flood=on)
                            time.sleep(seconds)
                        print(f"previews: workload: {load.summary()}", flush=True)
                        end = time.time()
                        return {board["uid"]: _query_board(prom, board, start, end)
                                for board in gen.build_all().values()}
            finally:
                daemon.stop()


def _query_board(prom: Any, board: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    variables: dict[str, str] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match, label = gen.variable_query(variable)
            found = prom.label_values(label, gen.interpolate(match, variables) if match else None)
            variables[variable["name"]] = gen.regex_value(sorted(found)) if found else ".*"
    step = max(1.0, round((end - start) / 240))
    panels: dict[str, list[Any]] = {}
    for panel, target in gen.queries(board):
        expr = gen.interpolate(target["expr"], variables, rate_interval=RATE_INTERVAL)
        if target.get("instant"):
            result = prom.query(expr, end)
        else:
            result = prom.query_range(expr, start, end, step)
        panels.setdefault(str(panel["id"]), []).append(result)
    return {"start": start, "end": end, "step": step, "panels": panels}


# --------------------------------------------------------------------------- formatting


def _scaled(value: float, base: int, units: list[str], decimals: int | None) -> str:
    i = 0
    while abs(value) >= base and i < len(units) - 1:
        value /= base
        i += 1
    return f"{_num(value, decimals)} {units[i]}"


def _num(value: float, decimals: int | None = None) -> str:
    if decimals is not None:
        return f"{value:.{decimals}f}"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    if magnitude >= 0.01:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.2g}"


def fmt(value: float, unit: str, decimals: int | None = None) -> str:
    """A value as Grafana prints it in `unit` (the units the dashboards use)."""
    if value is None or math.isnan(value):
        return "No data"
    if unit == "percentunit":
        return f"{_num(value * 100, decimals if decimals is not None else None)}%"
    if unit == "s":
        magnitude = abs(value)
        if magnitude == 0:
            return "0 s"
        if magnitude < 1:
            return f"{_num(value * 1000, decimals)} ms"
        if magnitude < 60:
            return f"{_num(value, decimals)} s"
        if magnitude < 3600:
            return f"{_num(value / 60, decimals)} min"
        if magnitude < 86400:
            return f"{_num(value / 3600, decimals)} hour"
        return f"{_num(value / 86400, decimals)} day"
    if unit == "bytes":
        return _scaled(value, 1024, ["B", "KiB", "MiB", "GiB", "TiB"], decimals)
    if unit == "binBps":
        return _scaled(value, 1024, ["B/s", "KiB/s", "MiB/s", "GiB/s"], decimals)
    if unit == "ops":
        return _scaled(value, 1000, ["ops/s", "K ops/s", "M ops/s"], decimals)
    if unit.startswith("suffix:"):
        return f"{_num(value, decimals)}{unit.removeprefix('suffix:')}"
    if abs(value) >= 1000:
        return _scaled(value, 1000, ["", "K", "Mil", "Bil"], decimals).strip()
    return _num(value, decimals)


def legend(fmt_: str, metric: dict[str, str]) -> str:
    if not fmt_ or fmt_ == "__auto":
        inner = ", ".join(f'{k}="{v}"' for k, v in metric.items() if k != "__name__")
        return f"{metric.get('__name__', '')}{{{inner}}}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt_).strip()


def threshold_color(value: float, thresholds: dict[str, Any] | None) -> str:
    color = "green"
    for step in (thresholds or {}).get("steps", []):
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return COLORS.get(color, color)


def mapped(value: float, mappings: list[dict[str, Any]]) -> tuple[str, str] | None:
    for mapping in mappings:
        option = mapping.get("options", {}).get(_num(value, 0) if value == int(value) else "")
        if mapping.get("type") == "value" and option:
            return option["text"], COLORS.get(option["color"], option["color"])
    return None


# --------------------------------------------------------------------------- drawing


def _series(result: list[dict[str, Any]], step: float) -> list[tuple[dict[str, str], Any, Any]]:
    """(labels, times, values) per series; gaps longer than two steps stay gaps."""
    out = []
    for series in result:
        times: list[float] = []
        values: list[float] = []
        for t, v in series.get("values", [series["value"]] if "value" in series else []):
            if times and t - times[-1] > 2 * step:
                times.append(times[-1] + step)
                values.append(math.nan)
            times.append(float(t))
            values.append(float(v))
        out.append((series["metric"], times, values))
    return out


def pt(px: float) -> float:
    """Font size in points for a height in pixels."""
    return px * 72 / DPI


class Canvas:
    """A figure addressed in pixels from the top-left corner, like Grafana's grid."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=BG)

    def axes(self, x: float, y: float, w: float, h: float) -> Any:
        return self.fig.add_axes((x / self.width, 1 - (y + h) / self.height,
                                  w / self.width, h / self.height))

    def text(self, x: float, y: float, text: str, size_px: float, color: str = TEXT,
             **kwargs: Any) -> None:
        self.fig.text(x / self.width, 1 - y / self.height, text, color=color,
                      fontsize=pt(size_px), va="center", **kwargs)

    def rect(self, x: float, y: float, w: float, h: float, color: str, zorder: float = -1,
             **kwargs: Any) -> None:
        """A filled box; below the axes (zorder 0) unless told otherwise."""
        self.fig.patches.append(Rectangle(
            (x / self.width, 1 - (y + h) / self.height), w / self.width, h / self.height,
            transform=self.fig.transFigure, facecolor=color, figure=self.fig, zorder=zorder,
            **kwargs))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fig.savefig(path, dpi=DPI, facecolor=BG)
        plt.close(self.fig)


def draw_board(board: dict[str, Any], data: dict[str, Any], out: Path) -> Path:
    header = 50  # px for the dashboard's title bar
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    c = Canvas(24 * COL_PX, rows * ROW_PX + header)
    span = datetime.fromtimestamp(data["start"]).strftime("%Y-%m-%d %H:%M")
    c.text(12, 26, board["title"], 20, fontweight="bold")
    c.text(c.width - 12, 26, f"preview from live data  ·  {span} + "
           f"{(data['end'] - data['start']) / 60:.0f} min  ·  cluster: All  ·  target: All",
           12, MUTED, ha="right")
    for panel in board["panels"]:
        pos = panel["gridPos"]
        x, y = pos["x"] * COL_PX + GUTTER, pos["y"] * ROW_PX + header + GUTTER
        w, h = pos["w"] * COL_PX - 2 * GUTTER, pos["h"] * ROW_PX - 2 * GUTTER
        if panel["type"] == "row":
            c.text(x, y + h / 2, panel["title"], 15, fontweight="bold")
            continue
        c.rect(x, y, w, h, PANEL_BG, zorder=-2, edgecolor=BORDER, linewidth=0.8)
        c.text(x + 8, y + 13, panel["title"], 12.5, fontweight="bold")
        results = data["panels"].get(str(panel["id"]), [])
        inner = (x + 6, y + 26, w - 12, h - 32)
        if panel["type"] == "timeseries":
            _timeseries(c, panel, results, data, inner)
        elif panel["type"] == "stat":
            _stat(c, panel, results, data, inner)
        elif panel["type"] == "table":
            _table(c, panel, results, inner)
    c.save(out)
    return out


def _nice_binary_step(top: float) -> float:
    """A tick step for bytes: a power of two times a power of 1024, 3 to 6 ticks."""
    step = 1.0
    while top / step > 6:
        step *= 2
    return step


def _timeseries(c: Canvas, panel: dict[str, Any], results: list[Any], data: dict[str, Any],
                inner: tuple[float, float, float, float]) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    unit, decimals = defaults["unit"], defaults.get("decimals")
    lines = []
    for target, result in zip(panel["targets"], results, strict=False):
        for metric, times, values in _series(result, data["step"]):
            lines.append((legend(target["legendFormat"], metric), times, values))
    x, y, w, h = inner
    # Legend entries flow left to right, as in Grafana's list legend.
    entries, cursor, legend_rows, line_px = [], 0.0, 1, 15
    for i, (name, _, _) in enumerate(lines):
        need = 22 + 6.2 * len(name)
        if cursor and cursor + need > w:
            legend_rows += 1
            cursor = 0.0
        entries.append((cursor, legend_rows - 1, PALETTE[i % len(PALETTE)], name))
        cursor += need
    legend_h = legend_rows * line_px + 4 if lines else 0
    ax = c.axes(x + 58, y, w - 62, h - legend_h - 18)
    ax.set_facecolor(PANEL_BG)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(colors=MUTED, labelsize=pt(10.5), length=0)
    ax.grid(True, color=GRID, linewidth=0.6)
    fill = defaults["custom"].get("fillOpacity", 0) / 100
    for i, (_, times, values) in enumerate(lines):
        color = PALETTE[i % len(PALETTE)]
        ax.plot(times, values, color=color, linewidth=1.2)
        if fill:
            ax.fill_between(times, values, 0, color=color, alpha=fill, linewidth=0)
    ax.set_xlim(data["start"], data["end"])
    finite = [v for _, _, vs in lines for v in vs if not math.isnan(v)]
    low = defaults.get("min", 0 if defaults["custom"].get("axisSoftMin") == 0 else None)
    top = defaults.get("max")
    if top is None:
        peak = max(finite, default=0.0)
        top = peak * 1.1 if peak > 0 else (1024.0 if unit in ("bytes", "binBps") else 1.0)
    if defaults["custom"]["thresholdsStyle"]["mode"] != "off":
        for step in defaults["thresholds"]["steps"][1:]:
            # Like Grafana: a threshold line shows only where the axis reaches it.
            if step["value"] <= top:
                ax.axhline(step["value"], color=COLORS.get(step["color"], step["color"]),
                           linestyle=(0, (6, 4)), linewidth=1.1)
    ax.set_ylim(low, top)
    if unit in ("bytes", "binBps"):
        ax.yaxis.set_major_locator(ticker.MultipleLocator(_nice_binary_step(top)))
    else:
        ax.yaxis.set_major_locator(ticker.MaxNLocator(5, integer=unit == "none" and top >= 2))
    ax.yaxis.set_major_formatter(lambda v, _pos: fmt(v, unit, decimals))
    ax.xaxis.set_major_locator(ticker.MaxNLocator(6))
    clock = "%H:%M:%S" if data["end"] - data["start"] <= 900 else "%H:%M"
    ax.xaxis.set_major_formatter(lambda v, _pos: datetime.fromtimestamp(v).strftime(clock))
    if not lines:
        ax.text(0.5, 0.5, "No data", color=MUTED, ha="center", va="center",
                transform=ax.transAxes)
    for left, row, color, name in entries:
        ly = y + h - legend_h + row * line_px + 8
        c.rect(x + left, ly - 2, 14, 4, color, zorder=1)
        c.text(x + left + 18, ly, name, 10.5)


def _stat(c: Canvas, panel: dict[str, Any], results: list[Any], data: dict[str, Any],
          inner: tuple[float, float, float, float]) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    options = panel["options"]
    series = []
    for target, result in zip(panel["targets"], results, strict=False):
        for metric, times, values in _series(result, data["step"]):
            last = next((v for v in reversed(values) if not math.isnan(v)), math.nan)
            series.append((legend(target["legendFormat"], metric), times, values, last))
    x, y, w, h = inner
    if not series:
        c.text(x + w / 2, y + h / 2, "No data", 18, MUTED, ha="center")
        return
    n, gap = len(series), 4
    horizontal = w >= h
    cell_w = (w - gap * (n - 1)) / n if horizontal else w
    cell_h = h if horizontal else (h - gap * (n - 1)) / n
    mode = options["textMode"]
    show_name = mode in ("value_and_name", "name") or (mode == "auto" and n > 1)
    show_value = mode != "name"
    for i, (name, times, values, last) in enumerate(series):
        cx = x + (i * (cell_w + gap) if horizontal else 0)
        cy = y + (0 if horizontal else i * (cell_h + gap))
        hit = mapped(last, defaults.get("mappings", [])) if not math.isnan(last) else None
        text, color = hit or (fmt(last, defaults["unit"], defaults.get("decimals")),
                              threshold_color(last, defaults.get("thresholds")))
        c.rect(cx, cy, cell_w, cell_h, color, alpha=0.92)
        if options.get("graphMode") == "area" and len(times) > 1:
            finite = [v for v in values if not math.isnan(v)]
            lo, hi = min(finite), max(finite)
            ax = c.axes(cx, cy + cell_h * 0.55, cell_w, cell_h * 0.45)
            ax.set_axis_off()
            ax.set_xlim(data["start"], data["end"])
            ax.set_ylim(lo - 0.05 * ((hi - lo) or 1), hi + 0.1 * ((hi - lo) or 1) * 4)
            ax.fill_between(times, values, lo - 1e9, color="white", alpha=0.16, linewidth=0)
        # Largest size that fits: bold digits are about 0.62 em wide.
        label = text if show_value else name
        size = min(cell_h * (0.38 if show_name and show_value else 0.5),
                   cell_w * 0.9 / (0.62 * max(len(label), 2)), 44)
        if show_name and show_value:
            c.text(cx + cell_w / 2, cy + cell_h * 0.3, name, max(min(size * 0.5, 14), 9),
                   "white", ha="center")
            c.text(cx + cell_w / 2, cy + cell_h * 0.66, text, size, "white", ha="center",
                   fontweight="bold")
        else:
            c.text(cx + cell_w / 2, cy + cell_h / 2, label, size, "white", ha="center",
                   fontweight="bold")


def _table(c: Canvas, panel: dict[str, Any], results: list[Any],
           inner: tuple[float, float, float, float]) -> None:
    organize = panel["transformations"][0]["options"]
    hidden = {k for k, v in organize["excludeByName"].items() if v}
    order = organize["indexByName"]
    rows = [r["metric"] for result in results for r in result]
    columns = sorted({k for r in rows for k in r} - hidden,
                     key=lambda col: (order.get(col, len(order)), col))
    columns = columns or sorted(order, key=lambda col: order[col])
    rank = {"critical": 0, "warning": 1, "info": 2}
    rows.sort(key=lambda r: (rank.get(r.get("severity", ""), 9), r.get("alertname", "")))
    x, y, w, h = inner
    shares = {"alertname": 0.36, "severity": 0.12, "cluster": 0.1, "target": 0.12}
    others = [col for col in columns if col not in shares]
    left = 1 - sum(shares[col] for col in columns if col in shares)
    line, cursor, cols = 22, x, []
    for col in columns:
        width = w * shares.get(col, left / max(len(others), 1))
        cols.append((col, cursor, width))
        cursor += width
    for col, cx, _ in cols:
        c.text(cx + 6, y + line / 2, col, 11, "#6e9fff", fontweight="bold")
    c.rect(x, y + line, w, 1, BORDER)
    severity = {"critical": "red", "warning": "orange", "info": "blue"}
    for i, row in enumerate(rows[: int((h - line) // line)]):
        ry = y + line * (i + 1)
        for col, cx, cw in cols:
            value = row.get(col, "")
            if col == "severity" and value:
                c.rect(cx, ry + 1, cw, line - 1, COLORS[severity.get(value, "text")])
            c.text(cx + 6, ry + line / 2, value[: int(cw / 6.5)], 10.5,
                   "white" if col == "severity" else TEXT)
        c.rect(x, ry + line, w, 0.6, GRID)
    if not rows:
        c.text(x + w / 2, y + h / 2, "No alerts firing", 14, MUTED, ha="center")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="length of the recorded run (default 3)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--data", type=Path, help="also save the query results here (JSON)")
    parser.add_argument("--redraw", type=Path, help="draw from saved results; start nothing")
    args = parser.parse_args(argv)
    if args.redraw:
        data = json.loads(args.redraw.read_text())
    else:
        data = collect(args.minutes)
        if args.data:
            args.data.write_text(json.dumps(data))
    for board in gen.build_all().values():
        path = draw_board(board, data[board["uid"]], args.out / f"{board['uid']}.png")
        print(f"previews: wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
