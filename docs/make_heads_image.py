"""docs/images/heads.png: heads.py's heads (odd rows) and the demo generator's renders of the same
z (even rows) at yaw -34 to +34 degrees, with the depth at the first yaw (heads_training.preview_grid),
for the held-out codes of seeds 3000-3002 (those benchmarks/heads.py measures).

    EG3D_ROOT=... python docs/make_heads_image.py                # the shipped weights
    EG3D_ROOT=... python docs/make_heads_image.py --network heads.pkl
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

YAWS = (-0.6, -0.3, 0.0, 0.3, 0.6)
SEEDS = (3000, 3001, 3002)


def main():
    from eg3d_regressor_plugin import bridge, heads_training as ht
    from eg3d_regressor_plugin.codes import seed_z
    ap = argparse.ArgumentParser()
    ap.add_argument('--network', default=None, help='a train-heads pickle (default: the shipped weights)')
    args = ap.parse_args()
    G = bridge.load_generator(args.network) if args.network else ht.shipped_networks()[0]
    z = torch.from_numpy(np.concatenate([seed_z(s, G.z_dim) for s in SEEDS]))
    out = REPO / 'docs' / 'images' / 'heads.png'
    PIL.Image.fromarray(ht.preview_grid(G, z, yaws=YAWS)).save(out)
    print(f'Wrote {out}')


if __name__ == '__main__':
    main()
