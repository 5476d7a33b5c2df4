"""docs/images/video_strip.png and docs/images/mesh.png from real `gen` runs: a clip of the
astronaut photo panned and zoomed (aligned per frame, smoothed), and a coloured .ply mesh drawn as
its triangles filled with their vertex colours, shaded, from the front and turned 45 degrees.

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


def mesh_picture(mesh_path, size=512, yaw_deg=30):
    """The mesh's triangles filled with their vertices' mean colour, shaded by a light from the
    viewer (Lambert), drawn far to near in an orthographic view turned by yaw_deg."""
    import PIL.ImageDraw
    import trimesh
    mesh = trimesh.load(mesh_path, force='mesh', process=False)
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces)
    col = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(np.float64)
    a = np.radians(yaw_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    p = (v - v.mean(0)) @ rot.T
    normals = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    shade = 0.35 + 0.65 * np.abs(normals[:, 2])
    half = np.abs(p[:, :2]).max() * 1.05
    xy = np.stack([(p[:, 0] / half + 1) * size / 2, (1 - p[:, 1] / half) * size / 2], 1)
    img = PIL.Image.new('RGB', (size, size), (255, 255, 255))
    draw = PIL.ImageDraw.Draw(img)
    depth = p[f, 2].mean(1)
    for i in np.argsort(depth):  # far first (EG3D's camera looks along -z: +z is near)
        c = tuple(int(x) for x in np.clip(col[f[i]].mean(0) * shade[i], 0, 255))
        draw.polygon([tuple(xy[j]) for j in f[i]], fill=c)
    return np.asarray(img)


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
        mesh = tmp / 'mesh' / 'astronaut' / 'shape.ply'
        PIL.Image.fromarray(np.concatenate([mesh_picture(mesh, yaw_deg=0), mesh_picture(mesh, yaw_deg=45)], 1)).save(
            out_images / 'mesh.png')
    print('wrote', out_images / 'video_strip.png', out_images / 'mesh.png')


if __name__ == '__main__':
    main()
