"""Rebuild docs/images/gen_overview.png from what examples/quickstart.sh wrote: one row per input
(comparison.png | views.png | depth.png), with white gaps.

    bash examples/quickstart.sh demo && python docs/make_overview.py demo
"""

import sys
from pathlib import Path

import numpy as np
import PIL.Image

GAP = 8


def row(folder):
    comparison, views = (np.asarray(PIL.Image.open(folder / n).convert('RGB')) for n in ('comparison.png', 'views.png'))
    h = comparison.shape[0]
    depth = np.asarray(PIL.Image.open(folder / 'depth.png').convert('RGB').resize((h, h), PIL.Image.NEAREST))
    gap = np.full((h, GAP, 3), 255, np.uint8)
    return np.concatenate([comparison, gap, views, gap, depth], axis=1)


def main(demo='demo'):
    gen = Path(demo) / 'gen'
    rows = [row(gen / 'seed0100'), row(gen / 'astronaut')]
    gap = np.full((GAP, rows[0].shape[1], 3), 255, np.uint8)
    out = Path(__file__).resolve().parent / 'images' / 'gen_overview.png'
    PIL.Image.fromarray(np.concatenate([rows[0], gap, rows[1]])).save(out)
    print(f'Wrote {out}')


if __name__ == '__main__':
    main(*sys.argv[1:])
