"""Interpolate between faces in EG3D's W+: images or w codes -> a strip of in-between faces, their
codes, shapes and a video. The work is in the library (sources, latent_interp, sequences),
imported when the command runs so that `--help` loads neither torch nor EG3D."""

import click

from .options import (Command, align_options, check_camera_path, device_option, eg3d_option, layers_option,
                      network_option, parse_pose, pose_option, regressor_option, sequence_outputs)

#----------------------------------------------------------------------------

@click.command('interp', cls=Command)
@network_option(help='EG3D network pickle')
@click.option('--from', 'start', metavar='IMAGE|NPY', help='First face: an image (needs --regressor) or a w .npy  '
              '[default: the --tuned face]')
@click.option('--to', 'end', required=True, metavar='IMAGE|NPY', help='Last face')
@click.option('--via', 'via', multiple=True, metavar='IMAGE|NPY', help='Faces to pass through on the way, in order (repeatable)')
@click.option('--tuned', 'tuned_path', metavar='PT', help='A tuned face (gen --tune-steps\'s tuned.pt), loaded onto '
              '--network: its tuned generator renders the whole path, and its face is --from unless given')
@regressor_option(required=False, help='Regressor checkpoint, for faces given as images')
@click.option('--steps', type=click.IntRange(min=2), default=7, show_default=True,
              help='Codes per segment, both ends included (K faces give (K-1)*(steps-1)+1 codes)')
@click.option('--mode', type=click.Choice(['linear', 'spherical']), default='linear', show_default=True,
              help='Linear, or spherical about the generator\'s w_avg (directions slerped, norms lerped)')
@layers_option(help='Interpolate only these W+ levels (0-7, coarse, middle, fine, 3,5,8-10); the others keep --from\'s  [default: all]')
@pose_option(help='Camera of every step: predicted (--from\'s pose, or the c.npy beside it; else frontal), frontal, or radians')
@align_options('each image')
@sequence_outputs('a shape per step', 'interp.mp4: the path there and back')
@eg3d_option
@device_option
def interp(network_pkl, start, end, via, tuned_path, regressor_path, steps, mode, layers, pose_spec, no_align, face_index,
           shapes, shape_res, shape_format, mesh_clean, decimate, video, video_frames, fps, orbit,
           camera_path, outdir, eg3d, device):
    """Interpolate between two or more faces in W+ and render the path in 3D.

    With --tuned (a face tuned by gen --tune-steps) the tuned generator renders every step: PTI's
    tuned generator stays editable near its pivot, so the path leaves the exact face smoothly.

    Writes to OUTDIR: strip.png (every step, up to 10 per row), w_<iii>.npy (float32
    [1, 14, 512] per step, w_000.npy = --from exactly, the last = --to exactly), c.npy (the
    camera), interp.json, with --shapes shape_<iii>.mrc/.ply per step, with --video interp.mp4
    (the path there and back, the camera orbiting with --orbit).

    Examples:

    \b
    # Two photos, spherical interpolation, 9 steps, with a video.
    eg3d-regress interp --network=ffhq512-128.pkl --regressor=regressor.pt \\
        --from=a.jpg --to=b.jpg --steps=9 --mode=spherical --video --outdir=out/ab

    \b
    # From a tuned face (gen --tune-steps) to a sampled code, rendered by its tuned generator.
    eg3d-regress interp --network=ffhq512-128.pkl --tuned=out/face/tuned.pt --to=codes/seed0001.npy --outdir=out/t

    \b
    # Codes from gen/sample-codes through a third face, fine levels only, with meshes.
    python -m eg3d_regressor_plugin.gen_interp --network=G.pkl --from=codes/seed0000.npy \\
        --via=codes/seed0001.npy --to=codes/seed0002.npy --layers=fine --shapes --shape-format=.ply --outdir=out/abc
    """
    from pathlib import Path

    from . import bridge, devices, sequences
    from . import latent_interp as li
    from .errors import UserError, check_file, require_extra
    from .files import atomic_dir, check_outdir
    from .sources import Sources

    if start is None and tuned_path is None:
        raise UserError('give --from IMAGE|NPY (or --tuned PT, whose face then starts the path)')
    if tuned_path is not None:
        check_file(tuned_path, 'tuned-face file (--tuned)')
    specs = [start if start is not None else tuned_path, *via, end]
    pose = parse_pose(pose_spec)
    Sources.check([s for s in specs if s != tuned_path], regressor_path, not no_align)
    if video:
        require_extra('video')
    check_camera_path(camera_path, video_frames)
    check_outdir(outdir)

    device = devices.get_device(device)
    G = bridge.load_generator(network_pkl, device=device, eg3d=eg3d)
    num_ws = int(G.backbone.num_ws)
    level_list = li.parse_layers(layers, num_ws)
    sources = Sources(G, regressor_path, pose=pose, align=not no_align, face_index=face_index, device=device)
    tuned_src = None
    if tuned_path is not None:  # the tuned generator renders the path; its face may be a knot
        G, tuned_src = sources.tuned(tuned_path)
    srcs = [tuned_src if s == tuned_path else sources(s) for s in specs]
    knots = [s['w'][0] for s in srcs]
    center = G.backbone.mapping.w_avg.detach().to(device) if mode == 'spherical' else None
    ws = li.interpolate(knots, steps, mode=mode, layers=level_list, center=center).float()
    c = srcs[0]['c']
    tags = [f'{i:03d}' for i in range(len(ws))]

    with atomic_dir(outdir) as tmp:
        shape_files = sequences.write_sequence(tmp, G, ws, c, tags, cols=10, grid_name='strip.png', shapes=shapes,
                                               shape_res=shape_res, shape_format=shape_format,
                                               mesh_clean=mesh_clean, decimate=decimate)
        if video:
            # As many codes per segment as spread the video's frames evenly over the segments.
            per_segment = max(2, round((sequences.forward_frames(video_frames) - 1) / (len(knots) - 1)) + 1)
            path = li.interpolate(knots, per_segment, mode=mode, layers=level_list, center=center).float()
            sequences.write_pingpong_video(Path(tmp) / 'interp.mp4', G, path, c, orbit=orbit, fps=fps,
                                           camera_path=camera_path)
        sequences.write_json(Path(tmp) / 'interp.json', dict(
            sources=[s['source'] for s in srcs], network=str(network_pkl),
            tuned=str(tuned_path) if tuned_path else None, steps=steps, mode=mode,
            center='w_avg' if mode == 'spherical' else None, layers=li.format_layers(level_list, num_ws),
            pose=pose_spec, yaw=srcs[0]['yaw'], pitch=srcs[0]['pitch'], codes=[f'w_{t}.npy' for t in tags],
            knots=[i * (steps - 1) for i in range(len(specs))], shapes=shape_files,
            video='interp.mp4' if video else None, orbit=orbit, camera_path=camera_path))
    click.echo(f'Interpolated {" -> ".join(Path(s).name for s in specs)} ({mode}, {len(ws)} codes) -> {outdir}')


if __name__ == '__main__':
    interp()  # pylint: disable=no-value-for-parameter
