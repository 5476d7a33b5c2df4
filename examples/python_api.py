"""Use the plugin from Python: image -> (w, pose) -> EG3D renders, depth and a mesh.

    python examples/python_api.py --network demo/G.pkl --regressor demo/runs/*/regressor-snapshot-*.pt \
        --image demo/codes/seed0100.png --outdir demo/api
"""

import glob

import click
import numpy as np

from eg3d_regressor_plugin import bridge, cameras, devices, meshes, render
from eg3d_regressor_plugin.inputs import load_input
from eg3d_regressor_plugin.invert import Inverter
from eg3d_regressor_plugin.files import save_image, save_npy
from eg3d_regressor_plugin.images import to_uint8


@click.command()
@click.option('--network', required=True)
@click.option('--regressor', required=True, help='Checkpoint (a glob picks the newest match)')
@click.option('--image', required=True)
@click.option('--outdir', required=True)
@click.option('--align/--no-align', default=False)
def main(network, regressor, image, outdir, align):
    bridge.import_eg3d()                                   # finds ../eg3d, EG3D_ROOT or --eg3d
    device = devices.get_device('auto')
    G = bridge.load_generator(network, device=device)     # EG3D's own legacy.load_network_pkl
    regressor = sorted(glob.glob(regressor))[-1]
    invert = Inverter(G, regressor, device=device)      # refuses a regressor made for another G

    img, _ = load_input(image, align=align, size=G.img_resolution)
    out = invert(img)                                    # w: [1, 14, 512]; yaw, pitch in radians
    print(f'yaw {np.degrees(out["yaw"].item()):+.1f} deg, pitch {np.degrees(out["pitch"].item()):+.1f} deg')

    rec = render.render(G, out['w'], out['c'])           # G.synthesis with a fixed RNG seed
    save_image(f'{outdir}/reconstruction.png', rec['image'])
    save_image(f'{outdir}/depth.png', render.depth_to_uint8(rec['image_depth']))
    views = render.render_views(G, out['w'], cameras.yaw_strip(5))
    save_image(f'{outdir}/views.png', np.concatenate(list(to_uint8(views)), axis=1))
    save_npy(f'{outdir}/w.npy', out['w'].cpu().numpy().astype(np.float32))
    path, faces = meshes.save_shape_file(f'{outdir}/shape.glb', G, out['w'], shape_res=128)
    print(f'wrote {outdir}: reconstruction, depth, views, w.npy, {path.name} ({faces} faces)')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
