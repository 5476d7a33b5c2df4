"""Image(s) -> w and camera pose -> EG3D reconstruction, novel views, depth, shape and video."""

import json
import math
import sys
import time
import traceback
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from . import cameras
from . import bridge, devices
from . import render
from .errors import UserError
from .files import atomic_dir, check_outdir, save_image, save_npy
from .images import image_grid, to_uint8
from .options import Command, parse_pose, device_option, eg3d_option, refine_options, shape_options

#----------------------------------------------------------------------------

def output_names(paths):
    """One output folder name per input: the file's stem, or stem_ext when two inputs share a stem."""
    stems = [p.stem for p in paths]
    return [f'{p.stem}_{p.suffix.lstrip(".")}' if stems.count(p.stem) > 1 else p.stem for p in paths]


def truncate(G, w, psi):
    """EG3D's truncation applied to a regressed w: w_avg + psi * (w - w_avg)."""
    if psi == 1:
        return w
    w_avg = G.backbone.mapping.w_avg.to(w)
    return w_avg + psi * (w - w_avg)


def pose_record(yaw, pitch):
    """yaw/pitch (radians, cameras.py's convention) in radians and degrees, with the elevation."""
    yaw, pitch = float(yaw), float(pitch)
    elevation = float(cameras.pitch_to_elevation(pitch))
    return dict(yaw=yaw, pitch=pitch, yaw_deg=math.degrees(yaw), pitch_deg=math.degrees(pitch),
                elevation=elevation, elevation_deg=math.degrees(elevation))


def render_uint8(G, w, c):
    out = render.render(G, w, c)
    return to_uint8(out['image'])[0], out


#----------------------------------------------------------------------------

def reconstruct(G, inverter, img, pose='predicted', truncation_psi=1.0, refine_steps=0, refine_lr=0.01,
                perceptual=None, refine_optimizer='lbfgs'):
    """One aligned image (uint8 [R,R,3], R = G.img_resolution) -> dict of tensors and timings:
    w_regressor, w (final: refined when refine_steps > 0), yaw, pitch (predicted), c_pred (the
    predicted camera, where the refinement compares with the input), c (the camera to render at),
    history (refinement), seconds."""
    t0 = time.perf_counter()
    with torch.no_grad():
        inv = inverter(img, pose=pose)
    w = truncate(G, inv['w'], truncation_psi).float()
    c_pred = cameras.pose_to_label(inv['yaw'], inv['pitch'], device=w.device)
    seconds = dict(regress=time.perf_counter() - t0)
    result = dict(w_regressor=w, w=w, yaw=inv['yaw'], pitch=inv['pitch'], c_pred=c_pred, c=inv['c'].float(),
                  history=None)
    if refine_steps:
        from .optimize import optimize_w
        t0 = time.perf_counter()
        result['w'], result['history'] = optimize_w(G, img, c_pred, w, refine_steps, lr=refine_lr,
                                                    perceptual=perceptual, progress=sys.stderr.isatty(),
                                                    desc='refine', optimizer=refine_optimizer)
        seconds['refine'] = time.perf_counter() - t0
    result['seconds'] = seconds
    return result


def write_outputs(folder, G, img, rec, views=3, shapes=False, shape_res=256, shape_format='.mrc', video=False,
                  video_frames=60, meta=None):
    """Write every output of one reconstruction into `folder` (an existing, empty folder)."""
    folder = Path(folder)
    t0 = time.perf_counter()
    w, c = rec['w'], rec['c']
    recon, out = render_uint8(G, w, c)
    save_image(folder / 'input.png', img)
    save_image(folder / 'reconstruction.png', recon)
    panels = [img, recon]
    if rec['history'] is not None:
        recon_reg, _ = render_uint8(G, rec['w_regressor'], c)
        save_image(folder / 'reconstruction_regressor.png', recon_reg)
        save_npy(folder / 'w_regressor.npy', rec['w_regressor'].detach().cpu().numpy().astype(np.float32))
        panels = [img, recon_reg, recon]
        with open(folder / 'refine.json', 'w') as f:
            json.dump(dict(steps=len(rec['history']) - 1, history=rec['history']), f, indent=1)
    save_image(folder / 'comparison.png', np.concatenate(panels, axis=1))
    save_npy(folder / 'w.npy', w.detach().cpu().numpy().astype(np.float32))
    save_npy(folder / 'c.npy', c.detach().cpu().numpy().astype(np.float32))
    depth = out['image_depth']
    save_npy(folder / 'depth.npy', depth[0, 0].detach().cpu().numpy().astype(np.float32))
    save_image(folder / 'depth.png', render.depth_to_uint8(depth))
    if views:
        strip = render.render_views(G, w, cameras.yaw_strip(views))
        save_image(folder / 'views.png', image_grid(list(to_uint8(strip)), cols=views))
    if shapes:
        render.save_shape(folder / 'shape', G, w, shape_res=shape_res, shape_format=shape_format,
                          progress=sys.stderr.isatty())
    if video:
        frames = render.video_frames(G, w.expand(video_frames, -1, -1), cameras.frontal_label(1, device=w.device), orbit=True)
        render.write_video(folder / 'orbit.mp4', frames, fps=30)
    rec['seconds']['write'] = time.perf_counter() - t0
    info = dict(predicted=pose_record(rec['yaw'][0], rec['pitch'][0]),
                rendered=pose_record(*(float(v[0]) for v in cameras.label_to_pose(c.cpu())[:2])),
                **(meta or {}), seconds={k: round(v, 4) for k, v in rec['seconds'].items()})
    with open(folder / 'pose.json', 'w') as f:
        json.dump(info, f, indent=2)

#----------------------------------------------------------------------------

@click.command('gen', cls=Command)
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='EG3D network pickle (path or URL)')
@click.option('--regressor', 'regressor_path', required=True, metavar='PT', help='Regressor checkpoint trained for this network')
@click.option('--image', 'image_spec', required=True, metavar='PATH|DIR|GLOB', help='Image file, folder of images or glob pattern')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write one folder per image')
@click.option('--no-align', is_flag=True, help='Inputs are already EG3D-style crops (e.g. EG3D renders): only resize them')
@click.option('--face-index', type=click.IntRange(min=0), default=None, help='Which face to use, 0 = largest  [default: 0]')
@click.option('--pose', 'pose_spec', default='predicted', show_default=True, metavar='predicted|frontal|YAW,PITCH',
              help='Camera of reconstruction.png (radians for YAW,PITCH)')
@click.option('--trunc', 'truncation_psi', type=float, default=1, show_default=True, help='Truncation psi toward w_avg')
@click.option('--views', type=click.IntRange(min=0), default=3, show_default=True, help='Novel views in views.png (0: none)')
@shape_options('the shape (density volume or mesh)')
@click.option('--video', is_flag=True, help='Also write an orbit video orbit.mp4 (needs the "video" extra)')
@click.option('--video-frames', type=click.IntRange(min=2), default=60, show_default=True, help='Frames of the orbit video')
@refine_options('Optimise w for N steps (renders) from the prediction; the refined w becomes the main output')
@click.option('--perceptual', default=None, metavar='lpips|VGG16',
              help='Perceptual term for the refinement: "lpips" or a path/URL to StyleGAN\'s vgg16.pt  [default: none]')
@click.option('--reload-modules', is_flag=True, help='Rebuild the generator from the checkout\'s code')
@eg3d_option
@device_option
def gen(network_pkl, regressor_path, image_spec, outdir, no_align, face_index, pose_spec, truncation_psi, views,
        shapes, shape_res, shape_format, video, video_frames, refine_steps, refine_optimizer, refine_lr, perceptual,
        reload_modules, eg3d, device):
    """Reconstruct faces in 3D from images: regress EG3D's w and the camera pose, then render.

    For each image, writes OUTDIR/<image name>/: input.png (the aligned crop), reconstruction.png
    (at --pose), comparison.png (input | reconstruction), views.png (a yaw strip), depth.png and
    depth.npy (float32 [h, w], EG3D's ray depth at the neural rendering resolution), w.npy
    float32 (1, 14, 512) and c.npy float32 (1, 25) (the files EG3D projectors and PTI use),
    pose.json (the predicted yaw/pitch in radians and degrees and the camera elevation), with
    --shapes shape.mrc or shape.ply, with --video orbit.mp4. reconstruction.png is exactly
    EG3D's G.synthesis(w, c, noise_mode='const') after torch.manual_seed(0).

    With --refine-steps N the regressed w is refined by W+ optimisation at the predicted camera
    (L-BFGS by default: N renders with gradients, each line-search trial counted);
    the refined w is then the main output (w.npy, reconstruction.png, views, depth, shape, video),
    the regressor's own prediction is kept as w_regressor.npy and reconstruction_regressor.png,
    comparison.png shows input | regressor | refined, and refine.json the PSNR of every step.

    A bad image is named in the summary and the others are still written; the exit status is then
    non-zero. Each image's folder appears only once it is complete.

    Examples:

    \b
    # One photo, aligned like EG3D's FFHQ crops, with its shape as a density volume.
    eg3d-regress gen --network=ffhq512-128.pkl --regressor=regressor.pt \\
        --image=face.jpg --outdir=out --shapes

    \b
    # A folder of EG3D renders (already cropped), a mesh, an orbit video, 50 refinement steps.
    python -m eg3d_regressor_plugin.gen_from_image --network=G.pkl --regressor=regressor.pt \\
        --image='renders/*.png' --no-align --shapes --shape-format=.ply --video --refine-steps=50 --outdir=out
    """
    # Every check that needs no network runs first, so a mistake costs nothing and writes nothing.
    pose = parse_pose(pose_spec)
    from .images import list_images
    paths = list_images(image_spec)
    check_outdir(outdir)
    if not no_align:
        from .errors import require_extra
        require_extra('align')
    if video:
        from .errors import require_extra
        require_extra('video')
    if perceptual and not refine_steps:
        raise UserError('--perceptual only applies to --refine-steps; set a number of steps')
    device = devices.get_device(device)
    G = bridge.load_generator(network_pkl, device=device, reload_modules=reload_modules, eg3d=eg3d)
    from .invert import Inverter, load_input
    inverter = Inverter(G, regressor_path, device=device)
    if perceptual:
        from .optimize import load_perceptual
        perceptual = load_perceptual(perceptual, device)

    names = output_names(paths)
    failures = []
    meta = dict(network=str(network_pkl), regressor=str(regressor_path), pose_option=pose_spec,
                truncation_psi=truncation_psi, refine_steps=refine_steps,
                refine_optimizer=refine_optimizer if refine_steps else None)
    for path, name in zip(tqdm(paths, desc='images', unit='img', disable=None), names):
        try:
            t0 = time.perf_counter()
            img, face = load_input(path, align=not no_align, face_index=face_index, size=G.img_resolution)
            load_s = time.perf_counter() - t0
            rec = reconstruct(G, inverter, img, pose=pose, truncation_psi=truncation_psi, refine_steps=refine_steps,
                              refine_lr=refine_lr, perceptual=perceptual, refine_optimizer=refine_optimizer)
            rec['seconds'] = dict(load=load_s, **rec['seconds'])
            with atomic_dir(Path(outdir) / name) as tmp:
                write_outputs(tmp, G, img, rec, views=views, shapes=shapes, shape_res=shape_res,
                              shape_format=shape_format, video=video, video_frames=video_frames,
                              meta=dict(source=str(path), face=face or None, **meta))
        except UserError as e:
            failures.append((path, e))
        except Exception as e:  # an unexpected failure on one image must not lose the others
            if len(paths) == 1:
                raise
            traceback.print_exc()
            failures.append((path, e))

    if len(paths) == 1 and failures:
        e = failures[0][1]
        raise e if isinstance(e, UserError) else UserError(str(e))
    ok = len(paths) - len(failures)
    click.echo(f'{ok} of {len(paths)} image{"s" if len(paths) > 1 else ""} reconstructed in {outdir}')
    if failures:
        for path, e in failures:
            # A UserError names its file already.
            msg = e.message if isinstance(e, UserError) else f'{path}: {type(e).__name__}: {e}'
            click.echo(f'  failed: {msg}', err=True)
        raise UserError(f'{len(failures)} of {len(paths)} images failed (listed above)')


if __name__ == '__main__':
    gen()  # pylint: disable=no-value-for-parameter
