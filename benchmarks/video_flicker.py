"""Flicker of a video reconstruction with and without temporal smoothing (gen --smooth), on a clip
whose true codes are known: EG3D renders of the tiny generator along a smooth latent path (w lerped
between two codes) and a smooth pose path (yaw 0.3 sin, pitch 0.1 cos over the clip).

For --smooth 0 (off), 1 and 2 (sigma in frames): the mean frame-to-frame change of w (L2 over
14 x 512), of the pose (L2 of yaw, pitch; radians) and of the reconstruction rendered at each
frame's camera (mean |change| per pixel value, 0..255), beside the true clip's own, and the mean
error of w against the true codes. The regressor is the tests' quickly fitted tiny one (30 steps
on 8 pairs): the figures show what the filter does, not what a trained regressor achieves.
Prints a table and writes benchmarks/video_flicker.json.

    python benchmarks/video_flicker.py [--frames 16]
"""

import argparse
import sys

import numpy as np
import torch

import common
from eg3d_regressor_plugin import cameras, render
from eg3d_regressor_plugin import video_input as vi
from eg3d_regressor_plugin.invert import Inverter
from eg3d_regressor_plugin.video_gen import image_flicker, regress_sequence, synthetic_clip

sys.path.insert(0, str(common.REPO / 'tests'))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--frames', type=int, default=16)
    ap.add_argument('--eg3d', default=None)
    args = ap.parse_args()
    G, _ = common.generator(eg3d=args.eg3d)
    from conftest import make_tiny_regressor
    path = common.CACHE / f'tiny-regressor-30steps-{common.fingerprint.generator_fingerprint(G)["w_avg_sha"]}.pt'
    if not path.is_file():
        make_tiny_regressor(G, path)
    inverter = Inverter(G, path, device='cpu')
    frames, true_ws, true_poses = synthetic_clip(G, n=args.frames)
    ws_raw, poses_raw = regress_sequence(G, inverter, frames)
    rows = [dict(run='true clip', w=vi.flicker(true_ws), pose=vi.flicker(true_poses), image=image_flicker(frames),
                 w_error=0.0)]
    for s in (0, 1, 2):
        ws, poses = vi.smooth_sequence(ws_raw, s), vi.smooth_sequence(poses_raw, s)
        imgs = [render.render_image(G, torch.from_numpy(w[None]).float(), cameras.pose_to_label(*p))[0]
                for w, p in zip(ws, poses)]
        rows.append(dict(run=f'--smooth {s}' + (' (off)' if s == 0 else ''), w=vi.flicker(ws), pose=vi.flicker(poses),
                         image=image_flicker(imgs),
                         w_error=float(np.linalg.norm((ws - true_ws).reshape(len(ws), -1), axis=1).mean())))
    off = rows[1]
    for r in rows[2:]:
        r.update(w_vs_off=r['w'] / off['w'], image_vs_off=r['image'] / off['image'])
    print(common.table(rows, [('run', 'run'), ('w', 'w flicker'), ('pose', 'pose flicker (rad)'),
                              ('image', 'image flicker (0..255)'), ('w_error', 'w error vs true'),
                              ('w_vs_off', 'w vs off'), ('image_vs_off', 'image vs off')]))
    print('wrote', common.save('video_flicker', dict(machine=common.machine('cpu'), frames=args.frames, rows=rows)))


if __name__ == '__main__':
    main()
