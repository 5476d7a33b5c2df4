"""Edit a face along an InterFaceGAN boundary: image or w -> w + alpha * boundary -> images, codes,
meshes and a sweep video. The work is in the library (sources, boundaries, latent_interp,
sequences), imported when the command runs so that `--help` loads neither torch nor EG3D."""

import click

from .options import (Command, align_options, check_camera_path, device_option, eg3d_option, layers_option,
                      network_option, parse_floats, parse_pose, pose_option, regressor_option, sequence_outputs)

#----------------------------------------------------------------------------

@click.command('edit', cls=Command)
@network_option(help='EG3D network pickle')
@click.option('--image', 'image', metavar='FILE', help='Face image to edit (needs --regressor)')
@click.option('--w', 'w_path', metavar='NPY', help='Latent code to edit: [1,14,512] (gen\'s w.npy) or [1,512]')
@click.option('--tuned', 'tuned_path', metavar='PT', help='A tuned face (gen --tune-steps\'s tuned.pt): edit it with its '
              'tuned generator, loaded onto --network')
@regressor_option(required=False, help='Regressor checkpoint for --image')
@click.option('--boundary', 'boundary_path', required=True, metavar='NPY', help='Boundary from `eg3d-regress boundary` or InterFaceGAN/EG3D ([1,512], [1,7168], [1,14,512])')
@click.option('--alphas', default='-3:3:7', show_default=True, metavar='START:STOP:COUNT|A,B,..',
              help='Edit strengths (distances along the unit boundary)')
@layers_option(help='W+ levels to edit: 0-7, coarse, middle, fine, 3,5,8-10 or all  [default: the boundary\'s, else all]')
@pose_option(help='Camera: predicted (the image\'s pose, or c.npy beside --w; else frontal), frontal, or radians')
@align_options('--image')
@sequence_outputs('a shape per alpha', 'sweep.mp4: alphas there and back')
@eg3d_option
@device_option
def edit(network_pkl, image, w_path, tuned_path, regressor_path, boundary_path, alphas, layers, pose_spec, no_align, face_index,
         shapes, shape_res, shape_format, mesh_clean, decimate, video, video_frames, fps, orbit,
         camera_path, outdir, eg3d, device):
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
    from pathlib import Path

    import numpy as np

    from . import boundaries, bridge, devices, sequences
    from . import latent_interp as li
    from .errors import UserError, check_file, require_extra
    from .files import atomic_dir, check_outdir
    from .sources import Sources, is_code

    # Checks that need no network first: a mistake costs nothing and writes nothing.
    if sum(v is not None for v in (image, w_path, tuned_path)) != 1:
        raise UserError('give exactly one of --image FILE (with --regressor), --w NPY or --tuned PT')
    spec = image or w_path or tuned_path
    if image is not None and is_code(image):
        raise UserError(f'--image {image} is a .npy file; use --w for latent codes')
    if w_path is not None and not is_code(w_path):
        raise UserError(f'--w {w_path}: expected a .npy latent code')
    alpha_list = parse_floats(alphas, '--alphas')
    pose = parse_pose(pose_spec)
    if tuned_path is None:
        Sources.check([spec], regressor_path, not no_align)
    else:
        check_file(tuned_path, 'tuned-face file (--tuned)')
    boundaries.load_boundary(boundary_path)
    if video:
        require_extra('video')
    check_camera_path(camera_path, video_frames)
    check_outdir(outdir)

    device = devices.get_device(device)
    G = bridge.load_generator(network_pkl, device=device, eg3d=eg3d)
    num_ws, w_dim = int(G.backbone.num_ws), int(G.w_dim)
    boundary, meta = boundaries.load_boundary(boundary_path, G=G)
    level_list = li.parse_layers(layers if layers is not None else meta.get('layers'), num_ws)
    sources = Sources(G, regressor_path, pose=pose, align=not no_align, face_index=face_index, device=device)
    if tuned_path is not None:  # the tuned generator renders the edits (PTI: it stays editable near its pivot)
        G, src = sources.tuned(tuned_path)
    else:
        src = sources(spec)
    w0 = src['w']
    ws = li.edit(w0[0], boundary, alpha_list, layers=level_list)
    tags = [sequences.alpha_tag(i, a) for i, a in enumerate(alpha_list)]

    with atomic_dir(outdir) as tmp:
        shape_files = sequences.write_sequence(tmp, G, ws, src['c'], tags, cols=len(alpha_list), grid_name='grid.png',
                                               shapes=shapes, shape_res=shape_res, shape_format=shape_format,
                                               mesh_clean=mesh_clean, decimate=decimate)
        if video:
            # Alphas densified piecewise-linearly; the video runs them there and back.
            n = sequences.forward_frames(video_frames)
            dense = np.interp(np.linspace(0, len(alpha_list) - 1, n), np.arange(len(alpha_list)), alpha_list)
            sequences.write_pingpong_video(Path(tmp) / 'sweep.mp4', G, li.edit(w0[0], boundary, dense, layers=level_list),
                                           src['c'], orbit=orbit, fps=fps,
                                           camera_path=camera_path)
        sequences.write_json(Path(tmp) / 'edit.json', dict(
            source=src['source'], network=str(network_pkl), boundary=str(boundary_path),
            attribute=meta.get('attribute'), boundary_space=boundaries.boundary_space(boundary, w_dim),
            alphas=alpha_list, layers=li.format_layers(level_list, num_ws), pose=pose_spec,
            yaw=src['yaw'], pitch=src['pitch'], codes=[f'w_{t}.npy' for t in tags], shapes=shape_files,
            video='sweep.mp4' if video else None, orbit=orbit, camera_path=camera_path))
    click.echo(f'Edited {Path(spec).name} along {Path(boundary_path).name} '
               f'({len(alpha_list)} alphas {alpha_list[0]:+g}..{alpha_list[-1]:+g}, levels '
               f'{li.format_layers(level_list, num_ws)}) -> {outdir}')


if __name__ == '__main__':
    edit()  # pylint: disable=no-value-for-parameter
