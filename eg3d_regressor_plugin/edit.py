"""Edit a face along an InterFaceGAN boundary: image or w -> w + alpha * boundary -> images, codes,
meshes and a sweep video. Also holds what `interp` shares with it: turning an image or a w.npy
into (w, camera), and rendering a sequence of codes to a grid, code files, shapes and a video."""

import json
import sys
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from . import cameras
from . import bridge, devices
from . import latent_interp as li
from . import render
from .errors import UserError, require_extra
from .files import atomic_dir, check_outdir, save_image, save_npy
from .images import image_grid, to_uint8
from .options import Command, parse_pose, device_option, eg3d_option, parse_floats, shape_options, video_options

#----------------------------------------------------------------------------
# Inputs: an image (through the regressor) or a code file, and the camera to render it at.

def load_camera(path):
    """A camera label file (gen's c.npy) -> float32 [1, 25]."""
    try:
        c = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UserError(f'camera file {path} is not a .npy array ({type(e).__name__})') from None
    if c.size != 25 or not np.all(np.isfinite(c)):
        raise UserError(f'camera file {path} has shape {c.shape}; expected [1, 25] finite values (EG3D\'s label)')
    return c.reshape(1, 25).astype(np.float32)


class Sources:
    """Turns each --image/--w/--from/--to argument into dict(w [1,num_ws,w_dim], c [1,25], yaw,
    pitch, source). Images go through the regressor (loaded once, on first use); codes are .npy
    files whose camera, for --pose predicted, is the c.npy beside them (as gen writes it), else
    the frontal camera."""

    def __init__(self, G, regressor=None, pose='predicted', align=True, face_index=None, device='cpu'):
        self.G, self.regressor, self.pose, self.align, self.face_index = G, regressor, pose, align, face_index
        self.device = torch.device(device)
        self._inverter = None

    @staticmethod
    def is_code(spec):
        return Path(spec).suffix.lower() == '.npy'

    @staticmethod
    def check(specs, regressor, align):
        """Checks that need no network: files exist; images come with a regressor and the align extra."""
        for spec in specs:
            p = Path(spec)
            if not p.exists():
                raise UserError(f'{spec}: no such file')
            if not Sources.is_code(spec) and p.is_dir():
                raise UserError(f'{spec} is a folder; give one image or one w .npy file')
        images = [s for s in specs if not Sources.is_code(s)]
        if images and regressor is None:
            raise UserError(f'{images[0]} is an image: turning it into w needs --regressor R.pt (or give a w .npy)')
        if images and align:
            require_extra('align')

    def _camera(self, yaw, pitch, c_predicted):
        if self.pose == 'predicted':
            return c_predicted, yaw, pitch
        if self.pose == 'frontal':
            yaw, pitch = 0.0, 0.0
        else:
            yaw, pitch = self.pose
        return cameras.pose_to_label(yaw, pitch, device=self.device), yaw, pitch

    def __call__(self, spec):
        G = self.G
        if self.is_code(spec):
            w = li.load_code(spec, int(G.backbone.num_ws), int(G.w_dim))
            w = torch.from_numpy(w).to(self.device)
            c_file = Path(spec).with_name('c.npy')
            if c_file.is_file():
                c = torch.from_numpy(load_camera(c_file)).to(self.device)
                yaw, pitch, _ = cameras.label_to_pose(c.cpu())
                yaw, pitch = float(yaw[0]), float(pitch[0])
            else:
                c, yaw, pitch = cameras.frontal_label(1, device=self.device), 0.0, 0.0
        else:
            from .invert import Inverter, load_input
            if self._inverter is None:
                self._inverter = Inverter(G, self.regressor, device=self.device)
            img, _ = load_input(spec, align=self.align, face_index=self.face_index, size=G.img_resolution)
            with torch.no_grad():
                inv = self._inverter(img, pose='predicted')
            w, c = inv['w'].float(), inv['c'].float()
            yaw, pitch = float(inv['yaw'][0]), float(inv['pitch'][0])
        c, yaw, pitch = self._camera(yaw, pitch, c)
        return dict(w=w.float(), c=c.float(), yaw=float(yaw), pitch=float(pitch), source=str(spec))

#----------------------------------------------------------------------------
# Outputs shared by edit and interp.

def render_codes(G, ws, c, desc='render'):
    """uint8 HWC images of each code in ws [N, num_ws, w_dim] at camera c [1, 25]."""
    return [to_uint8(render.render(G, w[None], c)['image'])[0]
            for w in tqdm(ws, desc=desc, unit='img', leave=False, disable=None)]


def pingpong(seq):
    """seq forward then back without repeating the ends: loops seamlessly."""
    seq = list(seq)
    return seq + seq[-2:0:-1]


def write_sequence(folder, G, ws, c, tags, cols, grid_name, shapes=False, shape_res=256, shape_format='.mrc'):
    """Write grid_name (the codes rendered at c, `cols` per row), w_<tag>.npy per code (float32
    [1, num_ws, w_dim]) and, with shapes, shape_<tag>.mrc/.ply per code. Returns the shape files."""
    folder = Path(folder)
    images = render_codes(G, ws, c)
    save_image(folder / grid_name, image_grid(images, cols=min(cols, len(images))))
    for w, tag in zip(ws, tags):
        save_npy(folder / f'w_{tag}.npy', w[None].detach().cpu().numpy().astype(np.float32))
    save_npy(folder / 'c.npy', c.detach().cpu().numpy().astype(np.float32))
    written = []
    if shapes:
        for w, tag in zip(tqdm(ws, desc='shapes', unit='shape', leave=False, disable=None), tags):
            path, _ = render.save_shape(folder / f'shape_{tag}{shape_format}', G, w[None], shape_res=shape_res,
                                        shape_format=shape_format, progress=sys.stderr.isatty())
            written.append(path.name)
    return written


def write_json(path, data):
    Path(path).write_text(json.dumps(data, indent=2, default=str) + '\n')


def alpha_tag(i, alpha):
    """Sortable, sign-explicit file tag: 00_alpha-3.00."""
    return f'{i:02d}_alpha{alpha:+.2f}'


#----------------------------------------------------------------------------

@click.command('edit', cls=Command)
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='EG3D network pickle')
@click.option('--image', 'image', metavar='FILE', help='Face image to edit (needs --regressor)')
@click.option('--w', 'w_path', metavar='NPY', help='Latent code to edit: [1,14,512] (gen\'s w.npy) or [1,512]')
@click.option('--regressor', 'regressor_path', metavar='PT', help='Regressor checkpoint for --image')
@click.option('--boundary', 'boundary_path', required=True, metavar='NPY', help='Boundary from `eg3d-regress boundary` or InterFaceGAN/EG3D ([1,512], [1,7168], [1,14,512])')
@click.option('--alphas', default='-3:3:7', show_default=True, metavar='START:STOP:COUNT|A,B,..',
              help='Edit strengths (distances along the unit boundary)')
@click.option('--layers', default=None, metavar='LEVELS',
              help='W+ levels to edit: 0-7, coarse, middle, fine, 3,5,8-10 or all  [default: the boundary\'s, else all]')
@click.option('--pose', 'pose_spec', default='predicted', show_default=True, metavar='predicted|frontal|YAW,PITCH',
              help='Camera: predicted (the image\'s pose, or c.npy beside --w; else frontal), frontal, or radians')
@click.option('--no-align', is_flag=True, help='--image is already an EG3D-style crop: only resize it')
@click.option('--face-index', type=click.IntRange(min=0), default=None, help='Which face of --image, 0 = largest')
@shape_options('a shape per alpha')
@video_options('sweep.mp4: alphas there and back')
@click.option('--outdir', required=True, metavar='DIR', help='Output folder (replaced as a whole when complete)')
@eg3d_option
@device_option
def edit(network_pkl, image, w_path, regressor_path, boundary_path, alphas, layers, pose_spec, no_align, face_index,
         shapes, shape_res, shape_format, video, video_frames, fps, orbit, outdir, eg3d, device):
    """Move a face along a semantic boundary (InterFaceGAN) and render every step in 3D.

    For each alpha, the chosen W+ levels of w move by alpha * boundary. Writes to OUTDIR:
    grid.png (one image per alpha, left to right), w_<i>_alpha<+a.aa>.npy (float32
    [1, 14, 512] each, e.g. w_00_alpha-3.00.npy), c.npy (the camera), edit.json, with --shapes
    shape_<i>_alpha<+a.aa>.mrc/.ply, with --video sweep.mp4 (alphas there and back, the camera
    orbiting with --orbit).

    Examples:

    \b
    # A photo: smile from -3 to +3, editing the coarse and middle levels, with meshes and a video.
    eg3d-regress edit --network=ffhq512-128.pkl --regressor=regressor.pt --image=face.jpg \\
        --boundary=smile.npy --alphas=-3:3:7 --layers=0-7 --shapes --shape-format=.ply --video --outdir=out/smile

    \b
    # A code written by gen or sample-codes, at the frontal camera.
    python -m eg3d_regressor_plugin.edit --network=G.pkl --w=out/face/w.npy --boundary=smile.npy \\
        --alphas=-2,0,2 --pose=frontal --outdir=out/smile
    """
    # Checks that need no network first: a mistake costs nothing and writes nothing.
    if (image is None) == (w_path is None):
        raise UserError('give exactly one of --image FILE (with --regressor) or --w NPY')
    spec = image if image is not None else w_path
    if image is not None and Sources.is_code(image):
        raise UserError(f'--image {image} is a .npy file; use --w for latent codes')
    if w_path is not None and not Sources.is_code(w_path):
        raise UserError(f'--w {w_path}: expected a .npy latent code')
    alpha_list = parse_floats(alphas, '--alphas')
    pose = parse_pose(pose_spec)
    Sources.check([spec], regressor_path, not no_align)
    boundary, meta = li.load_boundary(boundary_path)
    if video:
        require_extra('video')
    check_outdir(outdir)

    device = devices.get_device(device)
    G = bridge.load_generator(network_pkl, device=device, eg3d=eg3d)
    num_ws, w_dim = int(G.backbone.num_ws), int(G.w_dim)
    boundary, meta = li.load_boundary(boundary_path, G=G)
    level_list = li.parse_layers(layers if layers is not None else meta.get('layers'), num_ws)
    src = Sources(G, regressor_path, pose=pose, align=not no_align, face_index=face_index, device=device)(spec)
    w0 = src['w']
    ws = li.edit(w0[0], boundary, alpha_list, layers=level_list)
    tags = [alpha_tag(i, a) for i, a in enumerate(alpha_list)]

    with atomic_dir(outdir) as tmp:
        shape_files = write_sequence(tmp, G, ws, src['c'], tags, cols=len(alpha_list), grid_name='grid.png',
                                     shapes=shapes, shape_res=shape_res, shape_format=shape_format)
        if video:
            # Alphas densified piecewise-linearly, there and back.
            n = max(2, video_frames // 2 + 1)
            dense = np.interp(np.linspace(0, len(alpha_list) - 1, n), np.arange(len(alpha_list)), alpha_list)
            frame_ws = li.edit(w0[0], boundary, pingpong(dense), layers=level_list)
            render.write_video(Path(tmp) / 'sweep.mp4', render.video_frames(G, frame_ws, src['c'], orbit), fps=fps)
        write_json(Path(tmp) / 'edit.json', dict(
            source=src['source'], network=str(network_pkl), boundary=str(boundary_path),
            attribute=meta.get('attribute'), boundary_space=li.boundary_space(boundary, w_dim),
            alphas=alpha_list, layers=li.format_layers(level_list, num_ws), pose=pose_spec,
            yaw=src['yaw'], pitch=src['pitch'], codes=[f'w_{t}.npy' for t in tags], shapes=shape_files,
            video='sweep.mp4' if video else None, orbit=orbit))
    click.echo(f'Edited {Path(spec).name} along {Path(boundary_path).name} '
               f'({len(alpha_list)} alphas {alpha_list[0]:+g}..{alpha_list[-1]:+g}, levels '
               f'{li.format_layers(level_list, num_ws)}) -> {outdir}')



if __name__ == '__main__':
    edit()  # pylint: disable=no-value-for-parameter
