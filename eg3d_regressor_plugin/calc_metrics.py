"""Measure a regressor: latent, pose, image and depth errors on held-out synthetic images, and
image and identity similarity on real photos, each beside the mean-w baseline."""

from pathlib import Path

import click

from .options import Command, align_options, device_option, eg3d_option, network_option, parse_range, \
    refine_options, regressor_option, tune_options

DEFAULT_SEEDS = '1000-1063'

#----------------------------------------------------------------------------

@click.command('eval', cls=Command)
@network_option()
@regressor_option()
@click.option('--seeds', default=None, metavar='LIST',
              help=f'Held-out synthetic sample seeds, e.g. 1000-1063  [default: {DEFAULT_SEEDS} unless --images]')
@click.option('--images', 'images_spec', default=None, metavar='DIR|GLOB', help='Real photos to evaluate')
@align_options('each photo')
@click.option('--outdir', default=None, metavar='DIR',
              help='Where to write metrics.json, metrics.csv, grid.png  [default: beside the regressor, eval-<name>]')
@refine_options('Also measure w refined by N optimisation steps')
@tune_options
@click.option('--identity', default='dlib', show_default=True, metavar='dlib|ARCFACE.pth|none',
              help='Identity network for id_sim: dlib\'s face-recognition ResNet (the "align" extra) or an '
                   'ArcFace IR-SE50 checkpoint')
@click.option('--grid-rows', type=click.IntRange(min=0), default=8, show_default=True, help='Rows per set in grid.png')
@click.option('--reload-modules', is_flag=True, help='Rebuild the generator from the checkout\'s code')
@eg3d_option
@device_option
def calc_metrics(network_pkl, regressor_path, seeds, images_spec, no_align, outdir, face_index, refine_steps,
                 refine_optimizer, refine_lr, tune_steps, tune_lr, tune_coarse, identity, grid_rows, reload_modules, eg3d, device):
    """Evaluate a regressor against the mean-w baseline.

    \b
    On held-out synthetic seeds: latent L1/L2 (raw, and in units of the training std: *_norm),
    pose error (degrees: yaw, pitch, angle between the cameras), PSNR and SSIM of the re-render
    against the input, depth error against the generator's own depth at the true pose, and the
    identity similarity id_sim of the input and the render (cosine of --identity's embeddings of
    the aligned crops; dlib's network runs on any device, no face detection needed).
    On a generator trained by `train-heads`, the same seeds' procedural heads rendered by heads.py
    (not by the generator): pose error against the true camera, PSNR against the true image and
    depth error against the true depth (over the head), and the generator's own render of each
    head (_G columns).
    On real photos (--images): PSNR and SSIM against the aligned input, id_sim, and dlib's own
    detector + descriptor (id_cos, id_dist; NaN where dlib finds no face in the render).
    Time per image. The baseline renders w_avg at the same camera as the regressor's render.
    Writes metrics.json (means), metrics.csv (per image) and grid.png (input | regressor |
    baseline [| refined]).

    Examples:

    \b
    # Held-out synthetic images.
    eg3d-regress eval --network=G.pkl --regressor=regressor.pt --seeds=1000-1063 --outdir=eval

    \b
    # A folder of photos, and 50 refinement steps per image.
    python -m eg3d_regressor_plugin.calc_metrics --network=ffhq512-128.pkl --regressor=regressor.pt \\
        --images=photos/ --seeds=1000-1015 --refine-steps=50 --outdir=eval
    """
    from . import bridge, devices
    from .errors import UserError, extra_available, require_extra
    from .evaluate import evaluate_real, evaluate_synthetic, identity_scorer, summarise, table, write_csv, write_json
    from .files import check_outdir, save_image
    from .heads_training import heads_step
    from .images import image_grid, list_images
    from .invert import Inverter
    # Synthetic seeds by default; only photos when --images is given without --seeds.
    seed_list = parse_range(seeds) if seeds is not None else ([] if images_spec else parse_range(DEFAULT_SEEDS))
    paths = list_images(images_spec) if images_spec else []
    if paths and not no_align:
        require_extra('align')
    if outdir is None:
        outdir = Path(regressor_path).parent / f'eval-{Path(regressor_path).stem}'
    check_outdir(outdir, '--outdir')
    device = devices.get_device(device)
    if identity == 'dlib' and not extra_available('align'):
        identity = None  # eval works without the extra; id_sim is then left out
    scorer = identity_scorer(identity, device)  # a bad checkpoint fails before the generator loads
    G, snapshot_kwargs = bridge.load_snapshot(network_pkl, device=device, reload_modules=reload_modules, eg3d=eg3d)
    inverter = Inverter(G, regressor_path, device=device)
    w_std = inverter.predictor.w_stats['scale']

    refine = dict(refine_steps=refine_steps, refine_optimizer=refine_optimizer, refine_lr=refine_lr,
                  tune_steps=tune_steps, tune_lr=tune_lr, tune_coarse=tune_coarse)
    rows, grid, failures, report = [], [], [], {}
    if seed_list:
        r, g = evaluate_synthetic(G, inverter, seed_list, refine, w_std, grid_rows, scorer)
        rows += r
        grid += g
        report['synthetic'] = dict(count=len(r), seeds=seeds or DEFAULT_SEEDS, metrics=summarise(r))
    if seed_list and heads_step(snapshot_kwargs) is not None:  # a heads generator: the truth is known
        from .evaluate import evaluate_heads
        r, g = evaluate_heads(G, inverter, seed_list, refine, grid_rows, scorer)
        rows += r
        grid += g
        report['heads'] = dict(count=len(r), seeds=seeds or DEFAULT_SEEDS, metrics=summarise(r),
                               truth='heads.py renders of each seed\'s head at a camera drawn from its seed; _G: '
                                     'the generator\'s own render of that head')
    if paths:
        r, g, failures = evaluate_real(G, inverter, paths, not no_align, refine, grid_rows, face_index, scorer)
        rows += r
        grid += g
        report['real'] = dict(count=len(r), images=str(images_spec), metrics=summarise(r) if r else {},
                              failures=failures, identity=extra_available('align'))
    if not rows:
        raise UserError(f'nothing to evaluate: every image failed (first: {failures[0]["reason"]})')

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    report = dict(network=str(network_pkl), regressor=str(regressor_path), device=str(device),
                  refine_steps=refine_steps, refine_optimizer=refine_optimizer if refine_steps else None,
                  tune_steps=tune_steps,
                  baseline='w_avg (in every W+ level) at the same camera; '
                  'frontal pose for the pose error', columns='grid.png: input | regressor | baseline'
                  + (' | refined' if refine_steps else '') + (' | tuned' if tune_steps else ''), **report)
    write_json(outdir / 'metrics.json', report)
    write_csv(outdir / 'metrics.csv', rows)
    if grid:
        save_image(outdir / 'grid.png', image_grid([im for row in grid for im in row], cols=len(grid[0])))

    for name in ('synthetic', 'heads', 'real'):
        if name in report and report[name]['metrics']:
            click.echo(f'{name} ({report[name]["count"]} images):')
            for line in table(report[name]['metrics']):
                click.echo('  ' + line)
    for f in failures:
        click.echo(f'  skipped: {f["reason"]}', err=True)
    click.echo(f'Wrote {outdir / "metrics.json"}, metrics.csv, grid.png')


if __name__ == '__main__':
    calc_metrics()  # pylint: disable=no-value-for-parameter
