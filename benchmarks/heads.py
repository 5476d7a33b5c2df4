"""Benchmark 9, the heads demo generator (train-heads): what a generator with known truth lets us
measure, beside the random tiny generator's figures, in one run.

1. The generator itself: PSNR of its render of a held-out head's z against heads.py's render of
   that head, and the depth error (EG3D world units, over the pixels the head covers) against the
   true depth, at yaws across EG3D's range; for the random generator, the same against the same
   truth (what "no training" scores). The eyes and lips: the colour error over their pixels, beside
   a true head with none drawn and the true render blurred (which still shows them). With the
   run's state file, the learning curve (the training loss at a few steps).
2. A regressor trained on the heads generator (the benchmarks' CPU recipe, cached): on
   held-out heads rendered by heads.py itself, the pose error against the true camera and the
   depth error of its reconstruction against the true depth (evaluate.evaluate_heads, as `eval`
   reports it), beside the frontal / mean-w baseline.
3. An edit measured with the known parameters: codes sampled as sample-codes --head-scores
   draws them, scored by their true PARAM (--attribute), an InterFaceGAN boundary (boundaries.
   train_boundary), then held-out codes edited along it; each edited render's PARAM (and a
   control parameter's) is read back with heads.fit_param (the value whose true render is
   nearest). Reported: the boundary's accuracy, PARAM against alpha (mean over heads), the slope
   per unit alpha and its correlation, and the control's change.
4. The shape: the marching-cubes mesh of each held-out head's density (as `gen --shapes` makes
   it, at 128^3) against the true surface (heads_training.mesh_against_truth): its connected parts,
   whether the largest is closed, and the mean distance of its vertices to the true head.

    python benchmarks/heads.py                      # the shipped generator; ~10 minutes on a 2-core CPU
    python benchmarks/heads.py --network heads.pkl  # a train-heads pickle of one's own
    python benchmarks/heads.py --quick              # a smoke run
"""

import math
import warnings
from pathlib import Path

import click
import numpy as np
import torch
from scipy.ndimage import gaussian_filter

import common
from eg3d_regressor_plugin import boundaries, cameras, heads, heads_training as ht, metrics as M
from eg3d_regressor_plugin.codes import sample_w, seed_z
from eg3d_regressor_plugin.images import to_uint8
from eg3d_regressor_plugin.latent_interp import edit
from eg3d_regressor_plugin.render import render_image

YAWS = (-0.6, -0.3, 0.0, 0.3, 0.6)
BLUR = 2.0  # px at 128: the eyes and lips still show (feature error reference)
FIT = dict(hierarchical=True, n_samples=40)


def generator_fidelity(G, seeds, yaws=YAWS):
    """{yaw: dict(psnr, depth_err, feature_err, featureless_err, blurred_err)}: G's render of each
    seed's head against the truth, at each yaw. feature_err: the mean absolute colour error (0..1)
    over the pixels of the eyes and lips (heads.feature_mask); the same error of two references:
    featureless_err, the true head rendered with those parts in the skin colour (a render that draws
    none), and blurred_err, the true render blurred by a Gaussian of BLUR px (blurred, but drawn)."""
    nr = int(G.neural_rendering_resolution)
    out = {}
    for yaw in yaws:
        ps, ds, fs, f0, fb = [], [], [], [], []
        for seed in seeds:
            z = torch.from_numpy(seed_z(seed, G.z_dim))
            c = cameras.pose_to_label(torch.tensor([yaw]), torch.tensor([0.0]))
            params = heads.params_from_z(z)
            full = heads.render_heads(params, c, resolution=G.img_resolution, **ht.TARGET_RENDER)
            tt = ht.targets(z, c, G.img_resolution, nr, render=full)
            with torch.no_grad():
                own = ht.synthesize(G, z, c)
            ps.append(M.psnr(to_uint8(tt['image'])[0], to_uint8(own['image'].clamp(-1, 1))[0]))
            ds.append(float(M.depth_error(own['image_depth'], tt['depth'], tt['mask'])[0]))
            plain = heads.render_heads(params, c, resolution=G.img_resolution, features=False, **ht.TARGET_RENDER)
            m = heads.feature_mask(params, c, full).expand(-1, 3, -1, -1)
            fs.append(float((own['image'].clamp(-1, 1) - full['image'])[m].abs().mean() / 2))
            f0.append(float((plain['image'] - full['image'])[m].abs().mean() / 2))
            blurred = torch.from_numpy(gaussian_filter(full['image'].numpy(), (0, 0, BLUR, BLUR), mode='nearest'))
            fb.append(float((blurred - full['image'])[m].abs().mean() / 2))
        out[yaw] = dict(psnr=float(np.mean(ps)), depth_err=float(np.mean(ds)), feature_err=float(np.mean(fs)),
                        featureless_err=float(np.mean(f0)), blurred_err=float(np.mean(fb)))
    return out


def learning_curve(pkl, points=8):
    state = ht.state_path(pkl)
    if not Path(state).is_file():
        return []
    h = np.asarray(torch.load(state, map_location='cpu', weights_only=True)['history'])
    if not len(h):
        return []
    ends = np.unique(np.linspace(0, len(h), points + 1).astype(int)[1:])
    rows, start = [], 0
    for end in ends:  # the mean loss over each stretch of steps
        rows.append(dict(step=int(h[end - 1, 0]), loss=float(h[start:end, 1].mean()), image=float(h[start:end, 2].mean()),
                         depth=float(h[start:end, 4].mean())))
        start = end
    return rows


def edit_measure(G, attribute, control, train_seeds, test_seeds, alphas):
    codes = np.concatenate([sample_w(G, s).cpu().numpy() for s in train_seeds])
    scores = heads.seed_scores(train_seeds, G.z_dim, attribute)
    b, info = boundaries.train_boundary(codes[:, 0], scores, chosen_num_or_ratio=0.2)  # a known, continuous score
    c = cameras.frontal_label(1)
    est = {attribute: [], control: []}
    truth = []
    for s in test_seeds:
        w0 = sample_w(G, s)
        params = heads.params_from_z(torch.from_numpy(seed_z(s, G.z_dim)))
        truth.append(float(params[attribute][0]))
        ws = edit(w0[0], b, alphas)
        for name in est:
            est[name].append([heads.fit_param(render_image(G, w[None], c)[0], params, name, c, **FIT) for w in ws])
    a = np.asarray(est[attribute])   # [heads, alphas]
    ctl = np.asarray(est[control])
    x = np.tile(np.asarray(alphas, np.float64), len(test_seeds))
    slope = float(np.polyfit(x, a.ravel(), 1)[0])
    corr = float(np.corrcoef(x, a.ravel())[0, 1]) if a.std() > 0 else float('nan')
    lo, hi = heads.PARAM_RANGES[attribute]
    clo, chi = heads.PARAM_RANGES[control]
    return dict(accuracy=info['val']['accuracy'], alphas=list(alphas), attribute=attribute, control=control,
                mean=[float(v) for v in a.mean(0)], control_mean=[float(v) for v in ctl.mean(0)],
                at_zero_vs_truth=float(np.abs(a[:, list(alphas).index(0.0)] - truth).mean() / (hi - lo))
                if 0.0 in alphas else None,
                slope=slope, slope_of_range=slope / (hi - lo), corr=corr,
                control_change_of_range=float(np.abs(ctl[:, -1] - ctl[:, 0]).mean() / (chi - clo)),
                change_of_range=float((a[:, -1] - a[:, 0]).mean() / (hi - lo)))


def shipped_pickle(eg3d=None):
    """The shipped demo generator (init-network --preset heads) as a pickle, cached by its weights."""
    import hashlib
    from eg3d_regressor_plugin import bridge, presets
    bridge.import_eg3d(eg3d)
    sha = hashlib.sha256(ht.SHIPPED.read_bytes()).hexdigest()[:8]
    path = common.CACHE / f'heads-{sha}.pkl'
    if not path.is_file():
        G, D, kwargs = ht.shipped_networks()
        path.parent.mkdir(parents=True, exist_ok=True)
        presets.save_network_pkl(path, G, D, training_set_kwargs=kwargs)
    return str(path)


@click.command()
@click.option('--attribute', default='skin_tone', show_default=True, help='Head parameter the edit moves')
@click.option('--control', default='hair_lightness', show_default=True, help='Head parameter that should stay')
@common.regressor_options(pairs=common.CPU_PAIRS // 2)
def main(preset, network, regressor, train_kimg, train_pairs, device, quick, eg3d, attribute, control):
    if network is None:
        network = shipped_pickle(eg3d)
    device, G, pkl, reg = common.measured(preset, network, regressor, train_kimg, train_pairs, 'cpu', quick, eg3d)
    heads_step = ht.heads_step(pkl)
    if heads_step is None:
        raise click.UsageError(f'{pkl} is not a train-heads pickle (no heads_step in it)')
    G_random, _ = common.generator(None, 'tiny', device=device, eg3d=eg3d)
    fid_seeds = range(3000, 3002 if quick else 3006)

    print('1. The generator against the truth (PSNR dB, depth error in world units over the head)', flush=True)
    fid, fid_r = generator_fidelity(G, fid_seeds), generator_fidelity(G_random, fid_seeds)
    rows = [dict(yaw=f'{math.degrees(y):+.0f} deg', psnr=fid[y]['psnr'], depth=fid[y]['depth_err'],
                 psnr_r=fid_r[y]['psnr'], depth_r=fid_r[y]['depth_err']) for y in YAWS]
    print(common.table(rows, [('yaw', 'yaw'), ('psnr', 'heads G PSNR'), ('depth', 'heads G depth err'),
                              ('psnr_r', 'random G PSNR'), ('depth_r', 'random G depth err')]))
    print('\nThe eyes and lips: colour error (0..1) over their pixels; references: the true head with none drawn, '
          f'and the true render blurred by {BLUR:g} px')
    rows = [dict(yaw=f'{math.degrees(y):+.0f} deg', g=fid[y]['feature_err'], r=fid_r[y]['feature_err'],
                 none=fid[y]['featureless_err'], blur=fid[y]['blurred_err']) for y in YAWS]
    print(common.table(rows, [('yaw', 'yaw'), ('g', 'heads G'), ('r', 'random G'), ('none', 'featureless head'),
                              ('blur', 'blurred truth')]))
    g_err, none_err, blur_err = (np.mean([fid[y][k] for y in YAWS]) for k in ('feature_err', 'featureless_err', 'blurred_err'))
    print('Target: the eyes and lips drawn, i.e. nearer the blurred truth than the featureless head ('
          + ('met' if g_err < (none_err + blur_err) / 2 else 'NOT met')
          + f': heads G {g_err:.3f}, featureless head {none_err:.3f}, blurred truth {blur_err:.3f})')
    curve = learning_curve(pkl)
    if curve:
        print('\nLearning curve (train-heads loss, mean over each stretch of steps)')
        print(common.table(curve, [('step', 'up to step'), ('loss', 'loss'), ('image', 'image L1'), ('depth', 'depth L1')]))

    print('\n2. A regressor trained on the heads generator, on heads rendered by heads.py (the truth)', flush=True)
    from eg3d_regressor_plugin.evaluate import evaluate_heads, summarise
    from eg3d_regressor_plugin.invert import Inverter
    rows_h, _ = evaluate_heads(G, Inverter(G, reg, device=device, cuda_graph=False),
                               range(1000, 1004 if quick else 1032), refine={}, grid_rows=0)
    s = summarise(rows_h)
    reg_rows = [dict(metric=k, regressor=s[k]['mean'], baseline=s.get(k + '_baseline', {}).get('mean'))
                for k in ('yaw_err_deg', 'pitch_err_deg', 'pose_err_deg', 'depth_err', 'psnr', 'psnr_G', 'depth_err_G')]
    print(common.table(reg_rows, [('metric', 'metric'), ('regressor', 'regressor'), ('baseline', 'frontal / mean w')]))

    print(f'\n3. An edit along the learnt {attribute} boundary, read back with heads.fit_param', flush=True)
    alphas = (-2.0, 0.0, 2.0) if quick else (-3.0, -1.5, 0.0, 1.5, 3.0)
    e = edit_measure(G, attribute, control, range(5000, 5200 if quick else 5800), range(7000, 7002 if quick else 7006),
                     alphas)
    print(common.table([dict(alpha=a, v=v, cv=cv) for a, v, cv in zip(alphas, e['mean'], e['control_mean'])],
                       [('alpha', 'alpha'), ('v', f'{attribute} (read back)'), ('cv', f'{control} (read back)')]))
    print(f'\nboundary accuracy {e["accuracy"]:.3f}; {attribute} per unit alpha {e["slope"]:+.4g} '
          f'({e["slope_of_range"]:+.3f} of its range), correlation {e["corr"]:.3f}; over the sweep {attribute} moves '
          f'{e["change_of_range"]:+.3f} of its range, {control} {e["control_change_of_range"]:.3f}')
    print(f'Target: pose error measured (mean {s["pose_err_deg"]["mean"]:.2f} deg vs {s["pose_err_deg_baseline"]["mean"]:.2f} '
          f'frontal); the edit moves {attribute} ' + ('(met: ' if e['change_of_range'] > 2 * e['control_change_of_range']
                                                       and e['corr'] > 0.5 else '(NOT met: ')
          + f'{e["change_of_range"]:+.3f} vs control {e["control_change_of_range"]:.3f} of range, correlation {e["corr"]:.2f})')
    print('\n4. The mesh of each head\'s density against the true surface (world units; the heads are ~0.45 wide)',
          flush=True)
    shapes = []
    for seed in fid_seeds:
        z = torch.from_numpy(seed_z(seed, G.z_dim))
        m = ht.mesh_against_truth(G, z)
        with warnings.catch_warnings():  # the random density never reaches EG3D's level: cut lower, as gen does
            warnings.simplefilter('ignore')
            m_r = ht.mesh_against_truth(G_random, z)
        shapes.append(dict(seed=seed, parts=m['components'], closed=m['watertight'], err=m['surface_error'],
                           parts_r=m_r['components'], closed_r=m_r['watertight'], err_r=m_r['surface_error']))
    print(common.table(shapes, [('seed', 'seed'), ('parts', 'heads G parts'), ('closed', 'closed'),
                                ('err', 'surface error'), ('parts_r', 'random G parts'), ('closed_r', 'closed'),
                                ('err_r', 'surface error')]))
    print(f'Mesh: {sum(r["parts"] == 1 and r["closed"] for r in shapes)} of {len(shapes)} heads are one closed part; '
          f'mean surface error {np.mean([r["err"] for r in shapes]):.4f} (random G {np.mean([r["err_r"] for r in shapes]):.4f})')
    path = common.save('heads', dict(
        benchmark='heads', machine=common.machine(device), network=str(pkl), regressor=str(reg), quick=quick,
        heads_step=heads_step, fidelity={str(k): v for k, v in fid.items()},
        fidelity_random={str(k): v for k, v in fid_r.items()}, learning_curve=curve, regressor_metrics=s,
        edit=e, meshes=shapes), quick)
    print(f'\nWrote {path}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
