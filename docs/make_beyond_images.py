"""docs/images/video_strip.png and docs/images/mesh.png from real `gen` runs: a clip of the
astronaut photo panned and zoomed (aligned per frame, smoothed), and a coloured .ply mesh drawn as
its vertices projected orthographically (nearest last), each in its own colour.

    EG3D_ROOT=... python docs/make_beyond_images.py --network G.pkl --regressor R.pt
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run(*args):
    from click.testing import CliRunner
    from eg3d_regressor_plugin.gen_from_image import gen
    r = CliRunner().invoke(gen, [str(a) for a in args])
    if r.exit_code:
        raise SystemExit(r.output + repr(r.exception))
    return r


def clip(path, n):
    import imageio.v2 as imageio
    import skimage.data
    src = PIL.Image.fromarray(skimage.data.astronaut())
    frames = [np.asarray(src.resize((256, 256), PIL.Image.BILINEAR, box=(30 + 4 * i, 5 + 2 * i, 470 - 2 * i, 445 - 2 * i)))
              for i in range(n)]
    imageio.mimwrite(path, frames, fps=10, codec='libx264', macro_block_size=1, ffmpeg_log_level='error')
    return path


def mesh_picture(mesh_path, size=512):
    import trimesh
    mesh = trimesh.load(mesh_path, force='mesh', process=False)
    v = np.asarray(mesh.vertices)
    col = np.asarray(mesh.visual.vertex_colors)[:, :3]
    # EG3D's frame: the face looks along +z; x right, y up. Orthographic, slight yaw for depth.
    a = np.radians(25)
    x = v[:, 0] * np.cos(a) + v[:, 2] * np.sin(a)
    z = -v[:, 0] * np.sin(a) + v[:, 2] * np.cos(a)
    y = v[:, 1]
    lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
    px = ((x - lo) / (hi - lo) * (size - 9) + 4).astype(int)
    py = ((hi - y) / (hi - lo) * (size - 9) + 4).astype(int)
    img = np.full((size, size, 3), 255, np.uint8)
    for i in np.argsort(z):  # far first, near last
        img[py[i] - 1:py[i] + 2, px[i] - 1:px[i] + 2] = col[i]
    return img


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--network', required=True)
    ap.add_argument('--regressor', required=True)
    ap.add_argument('--frames', type=int, default=6)
    args = ap.parse_args()
    out_images = REPO / 'docs' / 'images'
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run('--network', args.network, '--regressor', args.regressor, '--image', clip(tmp / 'astronaut.mp4', args.frames),
            '--outdir', tmp / 'out', '--smooth', 1.0, '--device', 'cpu')
        import imageio.v2 as imageio
        reader = imageio.get_reader(str(tmp / 'out' / 'astronaut' / 'side_by_side.mp4'), format='FFMPEG')
        frames = [np.asarray(f) for f in reader]
        reader.close()
        picks = np.linspace(0, len(frames) - 1, min(4, len(frames))).round().astype(int)
        strip = np.concatenate([frames[i] for i in picks], axis=0)
        PIL.Image.fromarray(strip).save(out_images / 'video_strip.png')
        photo = tmp / 'astronaut.png'
        PIL.Image.fromarray(frames[0][:, :frames[0].shape[1] // 3]).save(photo)
        run('--network', args.network, '--regressor', args.regressor, '--image', photo, '--no-align', '--views', 0,
            '--shapes', '--shape-res', 96, '--shape-format', '.ply', '--outdir', tmp / 'mesh', '--device', 'cpu')
        PIL.Image.fromarray(mesh_picture(tmp / 'mesh' / 'astronaut' / 'shape.ply')).save(out_images / 'mesh.png')
    print('wrote', out_images / 'video_strip.png', out_images / 'mesh.png')


if __name__ == '__main__':
    main()
