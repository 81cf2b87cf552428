"""The case runner the SDK scripts share: `@case` registers a function, `expect_eq` compares
with a message, and `run` runs every case (each failure is reported, then the next case
runs), prints one line per case and a `label: N passed, N failed` summary, and returns the
script's exit code."""

import sys
import traceback

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def expect_eq(actual, expected, what):
    assert actual == expected, f"{what}: expected {expected!r}, got {actual!r}"


def run(label, header, base_url, api_key):
    if not base_url or not api_key:
        print("error: set PENNYWORTH_BASE_URL and PENNYWORTH_API_KEY", file=sys.stderr)
        return 2
    print(header)
    failed = []
    for fn in CASES:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next case runs
            failed.append(fn.__name__)
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stderr)
        else:
            print(f"ok   {fn.__name__}")
    print(f"{label}: {len(CASES) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print(f"failed cases: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
