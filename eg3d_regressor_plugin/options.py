"""Click options and parsers shared by the commands (EG3D's option names and styles), and the
command class that turns the library's UserError into one line on stderr.

Nothing here imports torch or EG3D: `--help` stays fast."""

import re

import click

from .catalog import COND_POSES, OPTIMIZERS, SHAPE_FORMATS, TUNE_COARSE
from .errors import UserError


class _Failure(click.ClickException):
    exit_code = UserError.exit_code


class Command(click.Command):
    """A click command that ends a UserError raised anywhere below it (option callbacks, the
    command, the library), and a bad option value, with one line 'Error: ...' on stderr and exit
    status 2 (click's own usage errors print the usage and a hint too)."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except UserError as e:
            raise _Failure(str(e)) from None
        except click.UsageError as e:
            if isinstance(e, click.exceptions.NoArgsIsHelpError):
                raise
            raise _Failure(e.format_message()) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise _Failure(str(e)) from None


def eg3d_option(f):
    return click.option('--eg3d', 'eg3d', metavar='PATH', envvar=None, default=None,
                        help='EG3D checkout (repo root or its eg3d/ folder)  [default: $EG3D_ROOT, then ../eg3d]')(f)


def device_option(f):
    return click.option('--device', default='auto', show_default=True, metavar='auto|cpu|cuda[:N]',
                        help='Where to run')(f)


def parse_range(s):
    """'0,1,4-6' -> [0, 1, 4, 5, 6] (EG3D's --seeds syntax)."""
    if isinstance(s, (list, tuple)):
        return list(s)
    out = []
    for part in str(s).split(','):
        m = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', part)
        if not m:
            raise click.BadParameter(f'{s!r}: expected a list like 0,1,4-6')
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise click.BadParameter(f'{part!r}: range end before start')
        out.extend(range(lo, hi + 1))
    return out


def seeds_type(ctx, param, value):
    return None if value is None else parse_range(value)


def parse_floats(s, name='value'):
    """'-3:3:7' (start:stop:count, inclusive) or '-1,0,2.5' -> list of floats."""
    import numpy as np
    try:
        if ':' in s:
            a, b, n = s.split(':')
            n = int(n)
            if n < 1:
                raise ValueError
            return [float(v) for v in np.linspace(float(a), float(b), n)]
        return [float(v) for v in s.split(',')]
    except ValueError:
        raise UserError(f'{name} {s!r}: expected START:STOP:COUNT (e.g. -3:3:7) or a list like -1,0,2.5') from None


def shape_options(what='the shape'):
    """--shapes, --shape-res, --shape-format (EG3D's gen_samples.py names), for every command that
    writes shapes."""
    def deco(f):
        f = click.option('--decimate', type=click.IntRange(min=4), default=None, metavar='FACES',
                         help='Simplify meshes to about this many faces (needs the "mesh" extra)')(f)
        f = click.option('--mesh-clean/--no-mesh-clean', default=True, show_default=True,
                         help='Keep only the largest connected part of meshes')(f)
        f = click.option('--shape-format', type=click.Choice(SHAPE_FORMATS), default='.mrc', show_default=True,
                         help='.mrc density volume (ChimeraX); .ply, .obj or .glb marching-cubes mesh coloured by '
                              'the generator\'s radiance')(f)
        f = click.option('--shape-res', type=click.IntRange(min=16), default=256, show_default=True,
                         help='Shape grid resolution')(f)
        return click.option('--shapes', is_flag=True, help=f'Also write {what}')(f)
    return deco


def video_options(what, orbit=True):
    """--video (writing `what`), --video-frames, --fps and, with `orbit`, --orbit (gen's video always
    orbits), for commands that write a video."""
    def deco(f):
        if orbit:
            f = click.option('--orbit', is_flag=True, help='Orbit the camera during the video')(f)
        f = click.option('--fps', type=click.IntRange(min=1), default=30, show_default=True, help='Video frame rate')(f)
        f = click.option('--video-frames', type=click.IntRange(min=2), default=60, show_default=True,
                         help='Frames of the video')(f)
        return click.option('--video', is_flag=True, help=f'Also write {what} (needs the "video" extra)')(f)
    return deco


def tune_options(f):
    """--tune-steps, --tune-lr, --tune-coarse: pivotal tuning of the generator around the final w (tuning.py)."""
    f = click.option('--tune-coarse', type=click.FloatRange(0, 1, max_open=True), default=TUNE_COARSE, show_default=True,
                     help='Share of the tuning steps rendered at half the neural rendering resolution (faster '
                          'steps; 0: every step at full resolution, as PTI)')(f)
    f = click.option('--tune-lr', type=click.FloatRange(min=0, min_open=True), default=3e-4, show_default=True,
                     help='Learning rate of the tuning (PTI\'s)')(f)
    return click.option('--tune-steps', type=click.IntRange(min=0), default=0, show_default=True,
                        help='Pivotal tuning: fine-tune the generator around the final w for N steps; every output '
                             'comes from the tuned generator, and tuned.pt holds what changed')(f)


def refine_options(help_steps):
    """--refine-steps, --refine-optimizer, --refine-lr: W+ optimisation after the regressor (optimize.py),
    for gen and eval."""
    def deco(f):
        f = click.option('--refine-lr', type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True,
                         help='Learning rate of the refinement (adam)')(f)
        f = click.option('--refine-optimizer', type=click.Choice(OPTIMIZERS), default='lbfgs',
                         show_default=True,
                         help='lbfgs: L-BFGS with line search; adam: Adam with StyleGAN projector\'s ramps')(f)
        return click.option('--refine-steps', type=click.IntRange(min=0), default=0, show_default=True,
                            help=help_steps)(f)
    return deco


def network_option(required=True, help='EG3D network pickle (path or URL)'):
    return click.option('--network', 'network_pkl', required=required, metavar='PKL', help=help)


def regressor_option(required=True, help='Regressor checkpoint trained for this network'):
    return click.option('--regressor', 'regressor_path', required=required, metavar='PT', help=help)


def align_options(what='the image'):
    """--no-align and --face-index, for commands that read photos."""
    def deco(f):
        f = click.option('--face-index', type=click.IntRange(min=0), default=None,
                         help=f'Which face of {what}, 0 = largest  [default: 0]')(f)
        return click.option('--no-align', is_flag=True,
                            help=f'{what[0].upper() + what[1:]} is already an EG3D-style crop (e.g. an EG3D render): '
                                 'only resize it')(f)
    return deco


def pose_option(help='Camera to render at (radians for YAW,PITCH)'):
    return click.option('--pose', 'pose_spec', default='predicted', show_default=True,
                        metavar='predicted|frontal|YAW,PITCH', help=help)


def parse_pose(s):
    """'predicted' | 'frontal' | 'YAW,PITCH' (radians) for --pose options."""
    if s in ('predicted', 'frontal'):
        return s
    try:
        yaw, pitch = (float(v) for v in s.split(','))
    except ValueError:
        raise UserError(f'--pose {s!r}: expected predicted, frontal or YAW,PITCH in radians (e.g. 0.3,-0.1)') from None
    return yaw, pitch


def layers_option(default=None, help='W+ levels to change: numbers and ranges (0-3,8), coarse, middle, fine or all'):
    return click.option('--layers', default=default, show_default=default is not None, metavar='LEVELS', help=help)


def parse_trunc_range(s):
    """'0.5,1.0' or '0.7' -> (lo, hi) with 0 <= lo <= hi."""
    if isinstance(s, (tuple, list)):
        lo, hi = (float(v) for v in s)
    else:
        try:
            vals = [float(v) for v in str(s).split(',')]
            if len(vals) not in (1, 2):
                raise ValueError
        except ValueError:
            raise UserError(f'--trunc-range {s!r}: expected LO,HI (e.g. 0.5,1.0) or one value') from None
        lo, hi = vals[0], vals[-1]
    if not 0 <= lo <= hi:
        raise UserError(f'--trunc-range {s!r}: expected 0 <= LO <= HI')
    return lo, hi


def sampling_options(f):
    """--trunc-range and --cond-pose: how synthetic pairs are drawn (training/data.py)."""
    f = click.option('--cond-pose', type=click.Choice(COND_POSES), default='random', show_default=True,
                     help='Pose the mapping network is conditioned on')(f)
    return click.option('--trunc-range', default='0.5,1.0', show_default=True,
                        help='Truncation psi range of the pairs: LO,HI (or one value)')(f)


CAMERA_PATH_HELP = ('orbit (EG3D\'s elliptic sweep), yaw (left-right), pitch (up-down), each one full period '
                    'around the face\'s pose, or a JSON file of cameras [{"yaw": rad, "pitch": rad, "radius": 2.7, '
                    '"fov": deg}, ...] (see camera_paths.py)')


def camera_path_option(what='the video', default=None, show=None):
    """--camera-path orbit|yaw|pitch|FILE.json: the cameras of `what` (camera_paths.parse_camera_path),
    shared by gen, edit and interp. The value stays a string (or None = the command's default);
    commands check it with camera_paths.parse_camera_path before loading the network."""
    return click.option('--camera-path', 'camera_path', default=default, metavar='orbit|yaw|pitch|FILE.json',
                        help=f'Cameras of {what}: {CAMERA_PATH_HELP}' + (f'  [default: {show}]' if show else ''))


def all_faces_option(f):
    """--all-faces: one output per detected face (NAME_face0, NAME_face1, ... in detection order)."""
    return click.option('--all-faces', is_flag=True,
                        help='Reconstruct every face: one folder each, NAME_face0, NAME_face1, ... (the most '
                             'confident / largest first, as --face-index counts)')(f)


def video_input_options(f):
    """--smooth and --max-frames, for commands that read a video clip (video_gen.py)."""
    f = click.option('--max-frames', type=click.IntRange(min=1), default=None, metavar='N',
                     help='Only the first N frames of a video input  [default: all]')(f)
    return click.option('--smooth', type=click.FloatRange(min=0), default=1.0, show_default=True, metavar='S',
                        help='Video input: smooth w and the pose over time with a Gaussian of sigma S frames '
                             '(0: off)')(f)


def workers_option(f):
    """--workers: reader processes of a folder of inputs (pipeline.py)."""
    return click.option('--workers', type=click.IntRange(min=0), default=None, metavar='N',
                        help='Folder input: N processes read and align images while the main process renders '
                             'and a thread writes (0: one image after another)  [default: up to 4]')(f)


def sequence_outputs(shape_what, video_what):
    """What edit and interp write besides their codes: --shapes (shape_options), --video
    (video_options), --camera-path of the video, and --outdir, replaced as a whole when complete."""
    def deco(f):
        f = click.option('--outdir', required=True, metavar='DIR',
                         help='Output folder (replaced as a whole when complete)')(f)
        f = camera_path_option('the video', show='orbit with --orbit, else the fixed camera')(f)
        return shape_options(shape_what)(video_options(video_what)(f))
    return deco


def check_camera_path(spec, frames):
    """Refuse a bad --camera-path before any work: the library's message, prefixed with the flag."""
    if spec is None:
        return
    from .camera_paths import parse_camera_path
    try:
        parse_camera_path(spec, frames)
    except UserError as e:
        raise UserError(f'--camera-path: {e}') from None
