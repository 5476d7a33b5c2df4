"""options.py: the shared option parsers, and the command class that turns a UserError into one
line on stderr."""

import click
import pytest
from click.testing import CliRunner

from eg3d_regressor_plugin import options
from eg3d_regressor_plugin.errors import UserError


def test_parse_pose():
    assert options.parse_pose('frontal') == 'frontal'
    assert options.parse_pose('0.3,-0.1') == (0.3, -0.1)
    with pytest.raises(UserError):
        options.parse_pose('left')


def test_parse_trunc_range():
    assert options.parse_trunc_range('0.5,1.0') == (0.5, 1.0)
    assert options.parse_trunc_range('0.7') == (0.7, 0.7)
    for bad in ('1,0.5', 'a,b', '-1,1', '1,2,3'):
        with pytest.raises(UserError):
            options.parse_trunc_range(bad)


def test_user_error_is_one_line_and_exit_2():
    @click.command('t', cls=options.Command)
    @click.option('--x', callback=lambda ctx, p, v: options.parse_pose(v))
    def t(x):
        raise UserError(f'library says no to {x}')

    r = CliRunner().invoke(t, ['--x', '0,0'])
    assert r.exit_code == 2 and r.output.strip() == 'Error: library says no to (0.0, 0.0)'
    r = CliRunner().invoke(t, ['--x', 'left'])  # raised while parsing, before the command runs
    assert r.exit_code == 2 and r.output.strip().startswith('Error: --pose') and 'Traceback' not in r.output


def test_help_imports_neither_torch_nor_eg3d():
    """`eg3d-regress --help` and every command's --help load only click and the option modules."""
    import subprocess
    import sys
    from eg3d_regressor_plugin.cli import COMMANDS
    for args in [['eg3d_regressor_plugin.cli', '--help']] + [['eg3d_regressor_plugin.cli', name, '--help']
                                                           for name in COMMANDS]:
        proc = subprocess.run([sys.executable, '-X', 'importtime', '-m', *args], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        loaded = {line.split('|')[-1].strip() for line in proc.stderr.splitlines() if line.startswith('import time:')}
        heavy = sorted(m for m in loaded if m.split('.')[0] in ('torch', 'gradio', 'dnnlib', 'torch_utils', 'legacy'))
        assert not heavy, (args, heavy[:5])
