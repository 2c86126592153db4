#!/usr/bin/env python3
"""Turn hilserl_core's control_golden.json into the flat text that golden_test.cpp reads.

JSON parsing in dependency-free C++ is not worth writing, so the golden file is
rewritten as one record per line (whitespace-separated tokens, numbers as
Python ``repr`` so they round-trip exactly; non-finite numbers as nan/inf/-inf):

    hilserl_control_golden 2
    atol <float>
    case <name> <function>
    in <key> <n> <v1> ... <vn>          (nested objects flattened: params.max_force_n, box.min_position_m)
    in box 0                            (box: null)
    event command <stamp_s> <n> <w1> ... <wn>            (offered without a clock: no future_stamp check)
    event command_at <stamp_s> <now_s> <n> <w1> ... <wn>  (offered at controller time now_s)
    event output <now_s>
    expect <key> <n> <v1> ... <vn>      (pos, quat, wrench)
    expect error <code>                 (integrate_twist_target, wrench_mode_wrench: non_finite)
    result accepted <0|1> <reason|->    (wrench_watchdog, one per command event)
    result wrench <n> <w1> ... <wn>     (wrench_watchdog, one per output event)
    end

Usage:
    golden_to_flat.py GOLDEN_JSON OUT_TXT                 # convert
    golden_to_flat.py GOLDEN_JSON OUT_TXT --run PROGRAM   # convert, then run PROGRAM OUT_TXT (CTest)
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

FORMAT_VERSION = 2
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _num(x: Any) -> float:
    """A golden number (JSON number or one of the non-finite strings) as a float."""
    if isinstance(x, str):
        if x not in _NON_FINITE:
            raise ValueError(f"golden number expected, got the string {x!r}")
        return _NON_FINITE[x]
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"golden number expected, got {x!r}")
    return float(x)


def _fmt(x: Any) -> str:
    return repr(_num(x))


def _values(value: Any) -> List[str]:
    items = value if isinstance(value, list) else [value]
    return [str(len(items))] + [_fmt(v) for v in items]


def _token(s: str) -> str:
    if not s or any(c.isspace() for c in s):
        raise ValueError(f"name/code {s!r} must be a non-empty string without whitespace")
    return s


def _inputs(prefix: str, obj: Dict[str, Any], out: List[str]) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if key == "events":
            continue
        if value is None:
            if prefix == "":  # a whole optional object (box: null)
                out.append(f"in {_token(name)} 0")
            continue  # an optional field of a given object: absent
        if isinstance(value, dict):
            _inputs(f"{name}.", value, out)
        else:
            out.append(" ".join(["in", _token(name)] + _values(value)))


def case_lines(case: Dict[str, Any]) -> List[str]:
    """Flat records of one golden case."""
    out = [f"case {_token(case['name'])} {_token(case['function'])}"]
    inputs = case["inputs"]
    _inputs("", inputs, out)
    for ev in inputs.get("events", []):
        if ev["op"] == "command" and ev.get("now_s") is not None:
            out.append(" ".join(["event", "command_at", _fmt(ev["stamp_s"]), _fmt(ev["now_s"])] + _values(ev["wrench"])))
        elif ev["op"] == "command":
            out.append(" ".join(["event", "command", _fmt(ev["stamp_s"])] + _values(ev["wrench"])))
        elif ev["op"] == "output":
            out.append(f"event output {_fmt(ev['now_s'])}")
        else:
            raise ValueError(f"case {case['name']}: unknown event op {ev['op']!r}")
    expected = case["expected"]
    for key, value in expected.items():
        if key == "results":
            for res in value:
                if "accepted" in res:
                    reason = res.get("reason") or "-"
                    out.append(f"result accepted {int(bool(res['accepted']))} {_token(reason)}")
                else:
                    out.append(" ".join(["result", "wrench"] + _values(res["wrench"])))
        elif key == "error":
            out.append(f"expect error {_token(value)}")
        else:
            out.append(" ".join(["expect", _token(key)] + _values(value)))
    out.append("end")
    return out


def convert(golden: Dict[str, Any]) -> str:
    """The whole golden document as flat text."""
    lines = [f"hilserl_control_golden {FORMAT_VERSION}", f"atol {_fmt(golden['atol'])}"]
    for case in golden["cases"]:
        lines.extend(case_lines(case))
    return "\n".join(lines) + "\n"


def main(argv: List[str]) -> int:
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--run"):
        print(__doc__, file=sys.stderr)
        return 2
    golden = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    Path(argv[1]).write_text(convert(golden), encoding="utf-8")
    if len(argv) == 4:
        return subprocess.run([argv[3], argv[1]], check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
