"""Report where EG3D was found, torch and the device, the custom ops and the optional extras."""

import platform

import click

from . import __version__
from .errors import EXTRAS, UserError, extra_available
from .options import Command, device_option, eg3d_option


@click.command('doctor', cls=Command)
@eg3d_option
@device_option
def doctor(eg3d, device):
    """Check the installation; exit non-zero when something needed is missing.

    \b
    Example:
      eg3d-regress doctor --eg3d ../eg3d
    """
    import torch
    from . import bridge, devices, presets
    problems = []
    click.echo(f'eg3d-regressor-plugin {__version__}, Python {platform.python_version()}, torch {torch.__version__}')
    try:
        root = bridge.import_eg3d(eg3d)
    except UserError as e:
        click.echo(f'EG3D:    NOT FOUND: {e.message}')
        raise SystemExit(1)
    commit = bridge.eg3d_commit(root)
    pinned = '' if commit is None else (' (the pinned commit)' if commit == bridge.PINNED_COMMIT
                                        else f' (not the pinned {bridge.PINNED_COMMIT[:7]})')
    click.echo(f'EG3D:    {root}, commit {commit or "unknown (not a git checkout)"}{pinned}')
    for fix in bridge.applied_fixes():
        click.echo(f'  fix:   {fix}')
    try:
        dev = devices.get_device(device)
    except UserError as e:
        click.echo(f'device:  {e.message}')
        raise SystemExit(1)
    cuda = f'{torch.cuda.get_device_name(dev)}' if dev.type == 'cuda' else 'no CUDA device in use'
    click.echo(f'device:  {dev} ({cuda}; CUDA available: {torch.cuda.is_available()})')
    for op, status in bridge.custom_ops_status(dev).items():
        click.echo(f'  op:    {op}: {status}')
    try:
        G, _ = presets.build_networks('tiny', w_avg_samples=0)
        with torch.no_grad():
            from .cameras import frontal_label
            c = frontal_label(1, device=dev)
            G = G.to(dev)
            img = G.synthesis(G.mapping(torch.zeros(1, G.z_dim, device=dev), c), c)['image']
        click.echo(f'render:  ok (tiny generator, {tuple(img.shape)})')
    except Exception as e:  # doctor reports rather than crashes
        click.echo(f'render:  FAILED: {type(e).__name__}: {e}')
        problems.append('render')
    for extra in EXTRAS:
        ok = extra_available(extra)
        pkgs = ' '.join(p for _, p in EXTRAS[extra])
        click.echo(f'extra:   {extra:12s} {"installed" if ok else "missing (pip install " + pkgs + ")"}')
    if problems:
        raise SystemExit(1)
    click.echo('All required parts work.')


if __name__ == '__main__':
    doctor()  # pylint: disable=no-value-for-parameter
