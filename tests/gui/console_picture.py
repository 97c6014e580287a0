"""Remake the README's picture of the operator console from the realistic synthetic session.

    QT_QPA_PLATFORM=offscreen python -m tests.gui.console_picture docs/console.png

draws :func:`tests.gui.synthetic_session.realistic_model` (two runs with head motion, the
second still going) at 1600x1000 with :func:`gui.picture.render_console_png`.  Seeded: the
same code gives the same picture.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the PNG to write, e.g. docs/console.png")
    parser.add_argument("--size", default="1600x1000", help="WxH in pixels (default 1600x1000)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from gui.cli import _parse_size
    from gui.picture import render_console_png
    from tests.gui.synthetic_session import realistic_model

    out = render_console_png(realistic_model(), args.out, _parse_size(args.size))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
