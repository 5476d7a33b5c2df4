"""Image(s) -> w and camera pose -> EG3D reconstruction, novel views, depth, shape and video."""

import sys

import click

from .options import (Command, align_options, all_faces_option, camera_path_option, check_camera_path, device_option,
                      eg3d_option, network_option, parse_pose, pose_option, refine_options, regressor_option,
                      shape_options, tune_options, video_input_options, video_options, workers_option)

#----------------------------------------------------------------------------

def _check_inputs(clips, photos, no_align, face_index, all_faces, pose, shapes, video, max_frames, tune_steps):
    """The options that depend on what --image is (photos, clips or both), checked before any work.
    Options for photos only are refused when there are only clips, and the other way round."""
    from .errors import UserError, require_extra
    if all_faces and no_align:
        raise UserError('--all-faces needs face detection: it cannot be combined with --no-align')
    if all_faces and face_index is not None:
        raise UserError('--all-faces and --face-index exclude each other: --all-faces already writes every face')
    if not no_align or all_faces:
        require_extra('align')
    if not clips:
        if max_frames is not None:
            raise UserError('--max-frames applies to a video input only')
        return
    require_extra('video')
    if photos:  # a folder of both: the photo options apply to its photos
        return
    if pose != 'predicted':
        raise UserError('--pose applies to photos; a video input is rendered at each frame\'s predicted camera')
    if shapes or video or tune_steps:
        flag = '--shapes' if shapes else '--video' if video else '--tune-steps'
        raise UserError(f'{flag} applies to photos; a video input writes ws.npy, cs.npy, poses.json and '
                        'side_by_side.mp4')

def _check_tuned(tuned_path, all_faces, face_index, truncation_psi, refine_steps, tune_steps, max_frames):
    """--tuned renders a saved face: the options that act on an input image do not apply."""
    from .errors import UserError, check_file
    check_file(tuned_path, 'tuned-face file (--tuned)')
    for flag, used in (('--all-faces', all_faces), ('--face-index', face_index is not None),
                       ('--trunc', truncation_psi != 1), ('--refine-steps', refine_steps), ('--tune-steps', tune_steps),
                       ('--max-frames', max_frames is not None)):
        if used:
            raise UserError(f'{flag} applies to --image; --tuned renders the saved face as it is')

#----------------------------------------------------------------------------

@click.command('gen', cls=Command)
@network_option()
@regressor_option(required=False, help='Regressor checkpoint trained for this network (needed with --image)')
@click.option('--image', 'image_spec', metavar='PATH|DIR|GLOB',
              help='Image file, folder or glob pattern (of images and video clips), or a video file (.mp4, .mov, '
                   '.avi, .mkv, .webm, ...)')
@click.option('--tuned', 'tuned_path', metavar='PT', help='Instead of --image: a tuned face (gen --tune-steps\'s '
              'tuned.pt) loaded back onto --network, rendered with every output but input.png and comparison.png')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write one folder per image')
@align_options('the image')
@all_faces_option
@pose_option('Camera of reconstruction.png (radians for YAW,PITCH)')
@click.option('--trunc', 'truncation_psi', type=float, default=1, show_default=True, help='Truncation psi toward w_avg')
@click.option('--views', type=click.IntRange(min=0), default=3, show_default=True, help='Novel views in views.png (0: none)')
@shape_options('the shape (density volume or mesh)')
@video_options('a video orbit.mp4 along --camera-path', orbit=False)
@camera_path_option('orbit.mp4 and views.png (views spread along the path); for a video input, of the '
                    'side-by-side video\'s novel view', show='orbit for orbit.mp4, a yaw strip for views.png, a fixed '
                    'view for a video input')
@video_input_options
@workers_option
@refine_options('Optimise w for N steps (renders) from the prediction; the refined w becomes the main output')
@tune_options
@click.option('--perceptual', default=None, metavar='lpips|VGG16',
              help='Perceptual term for the refinement: "lpips" or a path/URL to StyleGAN\'s vgg16.pt  [default: none]')
@click.option('--reload-modules', is_flag=True, help='Rebuild the generator from the checkout\'s code')
@eg3d_option
@device_option
def gen(network_pkl, regressor_path, image_spec, tuned_path, outdir, no_align, face_index, all_faces, pose_spec, truncation_psi,
        views, shapes, shape_res, shape_format, mesh_clean, decimate, video, video_frames, fps, camera_path, smooth,
        max_frames, workers, refine_steps, refine_optimizer, refine_lr, tune_steps, tune_lr, tune_coarse, perceptual, reload_modules, eg3d,
        device):
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

    --all-faces writes one folder per detected face, NAME_face0, NAME_face1, ... (most confident /
    largest first, the order --face-index counts in). --camera-path orbit|yaw|pitch|FILE.json sets
    the cameras of orbit.mp4 and of views.png.

    A video file as --image (any clip imageio/ffmpeg reads) gives OUTDIR/<clip name>/: ws.npy
    float32 (N, 14, 512) and cs.npy (N, 25) for the N frames, ws_regressor.npy (before smoothing),
    poses.json (per-frame pose, the bridged frames without a face, flicker figures) and
    side_by_side.mp4 (input crop | reconstruction at the frame's camera | a novel view). The face
    is tracked and its landmarks smoothed; w and the pose are smoothed over time with a Gaussian of
    sigma --smooth frames (0: off); --refine-steps refines each frame warm-started from the
    previous frame's refined w. Frames without the face are bridged from their neighbours and
    listed. A folder or glob may hold clips beside photos: each clip gets such a folder.

    A folder is read and aligned by --workers processes while the main process regresses and
    renders and a thread writes; the files are the same as one image after another.

    With --tune-steps N the generator itself is fine-tuned around the final w at the predicted
    camera (pivotal tuning, PTI's losses: pixel, perceptual with --perceptual, and a locality
    regulariser): every output comes from the tuned generator, comparison.png adds the render
    before tuning, tune.json holds the PSNR of every step and tuned.pt only what tuning changed
    (low-rank deltas, w and c; a few percent of a network pickle). `gen --tuned`, `edit --tuned`
    and `interp --tuned` load it back onto the same network pickle: `gen --tuned tuned.pt`
    writes OUTDIR/<face>/ again (no input.png or comparison.png), from the tuned generator.

    A bad image is named in the summary and the others are still written; the exit status is then
    non-zero. Each image's folder appears only once it is complete. A disk that fills up ends the
    run with one line naming the file that could not be written; nothing is left half-written.

    Examples:

    \b
    # One photo, aligned like EG3D's FFHQ crops, with its shape as a density volume.
    eg3d-regress gen --network=ffhq512-128.pkl --regressor=regressor.pt \\
        --image=face.jpg --outdir=out --shapes

    \b
    # A folder of EG3D renders (already cropped), a mesh, an orbit video, 50 refinement steps.
    python -m eg3d_regressor_plugin.gen_from_image --network=G.pkl --regressor=regressor.pt \\
        --image='renders/*.png' --no-align --shapes --shape-format=.ply --video --refine-steps=50 --outdir=out

    \b
    # Pivotal tuning (100 steps) saved as a small per-face file, then rendered again from it.
    eg3d-regress gen --network=ffhq512-128.pkl --regressor=regressor.pt --image=face.jpg --tune-steps=100 --outdir=out
    eg3d-regress gen --network=ffhq512-128.pkl --tuned=out/face/tuned.pt --video --outdir=again
    """
    # Every check that needs no network runs first, so a mistake costs nothing and writes nothing.
    from .errors import UserError, require_extra
    from .files import check_outdir
    from .images import list_images
    from .video_input import VIDEO_EXTS, is_video
    pose = parse_pose(pose_spec)
    if (image_spec is None) == (tuned_path is None):
        raise UserError('give --image PATH|DIR|GLOB (with --regressor) or --tuned PT (a face saved by --tune-steps)')
    if tuned_path is not None:
        _check_tuned(tuned_path, all_faces, face_index, truncation_psi, refine_steps, tune_steps, max_frames)
        paths = clips = []
    else:
        if regressor_path is None:
            raise UserError('--image needs --regressor R.pt (the regressor trained for --network)')
        paths = list_images(image_spec, extra_exts=VIDEO_EXTS)
        clips = [p for p in paths if is_video(p)]
        _check_inputs(clips, len(paths) - len(clips), no_align, face_index, all_faces, pose, shapes, video, max_frames,
                      tune_steps)
    check_outdir(outdir, '--outdir')
    check_camera_path(camera_path, video_frames)
    if video:
        require_extra('video')
    if shapes and decimate:
        require_extra('mesh')
    if perceptual and not (refine_steps or tune_steps):
        raise UserError('--perceptual only applies to --refine-steps and --tune-steps; set a number of steps')
    from pathlib import Path
    from . import bridge, devices
    from .invert import Inverter
    from .outputs import output_names
    from .pipeline import reconstruct_files
    device = devices.get_device(device)
    G = bridge.load_generator(network_pkl, device=device, reload_modules=reload_modules, eg3d=eg3d)
    output_kwargs = dict(views=views, shapes=shapes, shape_res=shape_res, shape_format=shape_format,
                         mesh_clean=mesh_clean, decimate=decimate, video=video, video_frames=video_frames, fps=fps,
                         camera_path=camera_path, progress=sys.stderr.isatty())
    if tuned_path is not None:
        from .pipeline import render_tuned_face
        from .sources import tuned_name
        folder = Path(outdir) / tuned_name(tuned_path)
        render_tuned_face(G, tuned_path, folder, pose=pose, output_kwargs=output_kwargs,
                          meta=dict(network=str(network_pkl), tuned=str(tuned_path), pose_option=pose_spec))
        click.echo(f'Rendered the tuned face {tuned_path} in {folder}')
        return
    inverter = Inverter(G, regressor_path, device=device)
    if perceptual:
        from .optimize import load_perceptual
        perceptual = load_perceptual(perceptual, device)

    progress = sys.stderr.isatty()
    meta = dict(network=str(network_pkl), regressor=str(regressor_path), pose_option=pose_spec,
                truncation_psi=truncation_psi, refine_steps=refine_steps,
                refine_optimizer=refine_optimizer if refine_steps else None, tune_steps=tune_steps)
    names = dict(zip(paths, output_names(paths)))
    failures = []
    if clips:
        from .pipeline import reconstruct_clips
        summaries, failures = reconstruct_clips(
            G, inverter, clips, outdir, [names[p] for p in clips], single=len(paths) == 1,
            align=not no_align, face_index=face_index, all_faces=all_faces, smooth=smooth,
            camera_path=camera_path, max_frames=max_frames, meta=meta, progress=progress,
            echo=lambda m: click.echo(m, err=True), truncation_psi=truncation_psi, refine_steps=refine_steps,
            refine_lr=refine_lr, refine_optimizer=refine_optimizer, perceptual=perceptual)
        for s in summaries:
            f = s['flicker']
            click.echo(f'{s["frames"]} frames of {Path(s["source"]).name} reconstructed in {s["folder"]} (flicker of '
                       f'w {f["w_regressor"]:.4g} -> {f["w"]:.4g} smoothed)')
    photos = [p for p in paths if p not in clips]
    if not photos and not failures:
        return
    failures += reconstruct_files(
        G, inverter, photos, outdir, names=[names[p] for p in photos], single=len(paths) == 1,
        align=not no_align, face_index=face_index, all_faces=all_faces,
        workers=workers, meta=meta,
        reconstruct_kwargs=dict(pose=pose, truncation_psi=truncation_psi, refine_steps=refine_steps, refine_lr=refine_lr,
                                perceptual=perceptual, refine_optimizer=refine_optimizer, tune_steps=tune_steps,
                                tune_lr=tune_lr, tune_coarse=tune_coarse, progress=progress),
        output_kwargs=output_kwargs)
    ok = len(paths) - len(failures)
    what = 'input' if clips else 'image'
    click.echo(f'{ok} of {len(paths)} {what}{"s" if len(paths) > 1 else ""} reconstructed in {outdir}')
    if failures:
        for _, message in failures:
            click.echo(f'  failed: {message}', err=True)
        raise UserError(f'{len(failures)} of {len(paths)} {what}s failed (listed above)')


if __name__ == '__main__':
    gen()  # pylint: disable=no-value-for-parameter
