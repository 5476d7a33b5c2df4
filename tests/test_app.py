"""`eg3d-regress app`: the page's handlers (webapp.py) on the tiny generator, and the page itself
in headless Chromium (marked `browser`)."""

import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, run_cli

from eg3d_regressor_plugin.errors import UserError

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


@pytest.fixture(scope='module')
def app_state(tiny_G, tiny_regressor, tmp_path_factory):
    from eg3d_regressor_plugin import webapp
    from eg3d_regressor_plugin.invert import Inverter
    rng = np.random.default_rng(0)
    boundary = rng.standard_normal((1, tiny_G.w_dim)).astype(np.float32)
    return webapp.AppState(tiny_G, Inverter(tiny_G, tiny_regressor, device='cpu'), device='cpu',
                           boundaries={'b': boundary}, shape_res=32, video_frames=3,
                           root=tmp_path_factory.mktemp('app'))


def render_png(G, path, seed=3, yaw=0.2, pitch=-0.05):
    """An EG3D render of G (a known w at a known pose) saved as PNG: an input that needs no aligning."""
    from eg3d_regressor_plugin import cameras, render
    from eg3d_regressor_plugin.files import save_image
    torch.manual_seed(seed)
    c = cameras.pose_to_label(yaw, pitch)
    with torch.no_grad():
        w = G.mapping(torch.randn(1, G.z_dim), c, truncation_psi=0.7)
    img, _ = render.render_image(G, w, c)
    save_image(path, img)
    return path


@pytest.fixture(scope='module')
def render_file(tiny_G, tmp_path_factory):
    return render_png(tiny_G, tmp_path_factory.mktemp('renders') / 'render.png')


@pytest.fixture(scope='module')
def not_an_image(tmp_path_factory):
    p = tmp_path_factory.mktemp('bad') / 'notes.png'
    p.write_text('this is not an image\n')
    return p

#----------------------------------------------------------------------------
# Handlers.

@pytest.mark.eg3d
def test_upload_gives_gen_outputs(app_state, render_file):
    from eg3d_regressor_plugin import webapp
    out = webapp.reconstruct_upload(app_state, None, str(render_file), no_align=True)
    folder = Path(out['folder'])
    assert Path(out['session']['dir']) in folder.parents
    w = np.load(folder / 'w.npy')
    assert w.shape == (1, 14, 512) and w.dtype == np.float32
    assert np.load(folder / 'c.npy').shape == (1, 25)
    pose = json.loads((folder / 'pose.json').read_text())
    assert abs(pose['predicted']['yaw_deg'] - out['yaw_deg']) < 1e-4
    for name in ('input.png', 'reconstruction.png', 'depth.png', 'depth.npy', 'views.png', 'comparison.png'):
        assert (folder / name).is_file(), name
    R = app_state.G.img_resolution
    assert out['crop'].shape == out['reconstruction'].shape == (R, R, 3)
    assert out['depth'].ndim == 3 and out['depth'].dtype == np.uint8  # depth.png as saved, grey
    assert [Path(f).name for f in out['files']] == ['w.npy', 'c.npy', 'pose.json']


@pytest.mark.eg3d
def test_rerender_at_another_yaw_differs(app_state, render_file):
    from eg3d_regressor_plugin import render, webapp
    out = webapp.reconstruct_upload(app_state, None, str(render_file), no_align=True)
    s = out['session']
    a = webapp.rerender(app_state, s, out['yaw_deg'], out['pitch_deg'])
    b = webapp.rerender(app_state, s, out['yaw_deg'] + 30, out['pitch_deg'])
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 1
    # the handler's image is render.render_image of the same code and camera (no second pipeline)
    ref, _ = render.render_image(app_state.G, s['w'], webapp.camera(app_state, out['yaw_deg'] + 30, out['pitch_deg']))
    np.testing.assert_array_equal(b, ref)


@pytest.mark.eg3d
def test_bad_uploads_give_clear_errors(app_state, not_an_image, render_file, tmp_path, monkeypatch):
    from eg3d_regressor_plugin import images, webapp
    with pytest.raises(UserError, match='not an image') as e:
        webapp.reconstruct_upload(app_state, None, str(not_an_image), no_align=True)
    assert str(not_an_image.parent) not in str(e.value)  # the visitor sees the file's name, not our paths
    with pytest.raises(UserError, match='no image'):
        webapp.reconstruct_upload(app_state, None, None)
    corrupt = tmp_path / 'half.png'
    data = (render_png(app_state.G, tmp_path / 'full.png')).read_bytes()
    corrupt.write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match='corrupt or truncated'):
        webapp.reconstruct_upload(app_state, None, str(corrupt), no_align=True)
    with monkeypatch.context() as m:  # a huge image: refused by the reader before it is decoded
        m.setattr(images, 'MAX_PIXELS', 1000)
        with pytest.raises(UserError, match='image too large') as e:
            webapp.reconstruct_upload(app_state, None, str(render_file), no_align=True)
        assert str(e.value).startswith('render.png: ')
    from eg3d_regressor_plugin.errors import extra_available
    if extra_available('align'):  # a photo without a face (the tiny generator's fog), with alignment on
        with pytest.raises(UserError, match='no face found in render.png') as e:
            webapp.reconstruct_upload(app_state, None, str(render_file), no_align=False)
        assert 'already aligned' in str(e.value)
    with pytest.raises(UserError, match='no face yet'):
        webapp.rerender(app_state, webapp.new_session(app_state), 0, 0)
    with pytest.raises(UserError, match='refinement steps'):
        webapp.reconstruct_upload(app_state, None, str(corrupt), refine_steps=10 ** 6)


@pytest.mark.eg3d
def test_sessions_have_their_own_folders(app_state, render_file):
    from eg3d_regressor_plugin import webapp
    a = webapp.reconstruct_upload(app_state, None, str(render_file), no_align=True)
    b = webapp.reconstruct_upload(app_state, None, str(render_file), no_align=True)
    da, db = Path(a['session']['dir']), Path(b['session']['dir'])
    assert da != db and da.is_dir() and db.is_dir()
    assert not any(Path(f).is_relative_to(da) for f in b['files'])
    assert oct(da.stat().st_mode & 0o777) == '0o700'
    # a second upload in one session replaces that session's earlier files
    first = Path(a['folder'])
    again = webapp.reconstruct_upload(app_state, a['session'], str(render_file), no_align=True)
    assert Path(again['folder']).parent == da and not first.exists()
    webapp.close_session(a['session'])
    assert not da.exists() and db.is_dir()


@pytest.mark.eg3d
@pytest.mark.slow
def test_edits_interpolation_mesh_and_export(app_state, render_file, tiny_G, tmp_path):
    from eg3d_regressor_plugin import webapp
    out = webapp.reconstruct_upload(app_state, None, str(render_file), no_align=True)
    s = out['session']
    y, p = out['yaw_deg'], out['pitch_deg']
    plain = webapp.update_code(app_state, s, y, p, 0, [('b', 0, 'all')])
    edited = webapp.update_code(app_state, s, y, p, 0, [('b', 3, '0-6')])
    assert np.abs(plain.astype(int) - edited.astype(int)).mean() > 0.5
    assert torch.equal(s['w'][0, 7:], s['w_base'][0, 7:]) and not torch.equal(s['w'][0, :7], s['w_base'][0, :7])
    with pytest.raises(UserError, match='b layers'):
        webapp.update_code(app_state, s, y, p, 0, [('b', 1, '99')])
    other = render_png(tiny_G, tmp_path / 'other.png', seed=11, yaw=-0.3)
    crop2 = webapp.upload_second(app_state, s, str(other), no_align=True)
    assert crop2.shape == out['crop'].shape
    webapp.update_code(app_state, s, y, p, 1.0)
    assert torch.allclose(s['w'], s['w2'])
    glb, files = webapp.make_mesh(app_state, s)
    refined = webapp.reconstruct_upload(app_state, None, np.asarray(out['crop']), no_align=True, refine_steps=2)
    assert (Path(refined['folder']) / 'refine.json').is_file()
    assert (Path(refined['folder']) / 'w_regressor.npy').is_file()
    assert Path(glb).suffix == '.glb' and Path(glb).read_bytes()[:4] == b'glTF'
    assert {Path(f).name for f in files} == {'w.npy', 'c.npy', 'pose.json', 'shape.ply', 'shape.glb'}
    from eg3d_regressor_plugin.errors import extra_available
    video = extra_available('video')
    glb, files = webapp.export_current(app_state, s, 20, 0, video=video)
    names = {Path(f).name: f for f in files}
    assert {'w.npy', 'c.npy', 'pose.json', 'shape.ply', 'shape.glb'} <= set(names)
    assert (not video) or Path(names['orbit.mp4']).stat().st_size > 0
    np.testing.assert_allclose(np.load(names['w.npy']), s['w'].numpy())
    assert abs(json.loads(Path(names['pose.json']).read_text())['rendered']['yaw_deg'] - 20) < 0.1


@pytest.mark.eg3d
def test_page_builds(app_state):
    pytest.importorskip('gradio', reason='needs the "app" extra (gradio)')
    from eg3d_regressor_plugin import webapp
    demo = webapp.build(app_state)
    assert type(demo).__name__ == 'Blocks'


def test_boundary_specs():
    from eg3d_regressor_plugin import webapp
    assert webapp.parse_boundaries(['smile=a/b.npy', 'age = c.npy']) == {'smile': 'a/b.npy', 'age': 'c.npy'}
    for bad in (['smile'], ['=x.npy'], ['a=x.npy', 'a=y.npy']):
        with pytest.raises(UserError, match='--boundary'):
            webapp.parse_boundaries(bad)


def test_cli_help_and_bad_boundary(tmp_path):
    proc = run_cli('app', '--help')
    assert proc.returncode == 0 and '--share' in proc.stdout and '127.0.0.1' in proc.stdout
    code = ('import sys; from click.testing import CliRunner; from eg3d_regressor_plugin.cli import main; '
            'r = CliRunner().invoke(main, ["app", "--help"]); assert r.exit_code == 0, r.output; '
            'print(sorted(m for m in ("torch", "gradio") if m in sys.modules))')
    import subprocess
    import sys
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == '[]', out.stdout + out.stderr  # --help imports neither torch nor gradio
    pytest.importorskip('gradio', reason='needs the "app" extra (gradio)')
    proc = run_cli('app', '--network', tmp_path / 'G.pkl', '--regressor', tmp_path / 'R.pt', '--boundary', 'smile')
    assert '--boundary' in assert_one_line_error(proc)

#----------------------------------------------------------------------------
# The page in a browser.

CHROMIUM = os.environ.get('CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser')


def _browser_missing():
    try:
        import gradio  # noqa: F401
    except ImportError:
        return 'needs the "app" extra (pip install gradio)'
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'needs playwright (pip install playwright)'
    if not CHROMIUM:
        return 'needs a Chromium binary (apt-get install chromium, or set $CHROMIUM)'
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def served(request):
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    app_state = request.getfixturevalue('app_state')  # built only when the browser tests can run
    from eg3d_regressor_plugin import webapp
    port = _free_port()
    demo = webapp.launch(app_state, port=port, block=False, quiet=True)
    yield f'http://127.0.0.1:{port}/'
    demo.close()


@pytest.fixture(scope='module')
def page(served):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=['--no-sandbox'])
        context = browser.new_context(viewport=dict(width=1400, height=1100), accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(120_000)
        pg.goto(served)
        pg.wait_for_selector('#go')
        yield pg
        browser.close()


def _src(page, selector):
    img = page.locator(f'{selector} img').first
    return img.get_attribute('src') if img.count() else None


def _wait_new_src(page, selector, old, timeout=180):
    t0 = time.time()
    while time.time() - t0 < timeout:
        src = _src(page, selector)
        if src and src != old:
            return src
        page.wait_for_timeout(250)
    raise AssertionError(f'{selector}: no new image within {timeout} s')


def _upload(page, selector, path):
    page.locator(f'{selector} input[type=file]').set_input_files(str(path))


def _error_text(page, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        toasts = page.locator('.toast-body')
        if toasts.count():
            return ' '.join(toasts.all_inner_texts())
        page.wait_for_timeout(250)
    return ''


def _close_toasts(page):
    for btn in page.locator('.toast-close').all():
        try:
            btn.click(timeout=2000)
        except Exception:  # noqa: BLE001 a toast that closed itself
            pass


@pytest.mark.eg3d
@pytest.mark.browser
def test_page_in_browser(page, render_file, not_an_image, tmp_path):
    # An EG3D render, already aligned.
    page.locator('#no-align input').check()
    _upload(page, '#photo', render_file)
    view = _wait_new_src(page, '#view', None)
    assert _src(page, '#crop') and _src(page, '#depth')
    assert 'Predicted pose' in page.locator('#status').inner_text()
    page.wait_for_timeout(1500)  # the slider events the upload itself set off
    view = _src(page, '#view')
    # Turn the face.
    page.locator('#yaw input[type=range]').fill('45')
    turned = _wait_new_src(page, '#view', view)
    assert turned != view
    # Download w.npy.
    link = page.locator('#files a[download="w.npy"]').first
    link.wait_for()
    with page.expect_download() as dl:
        link.click()
    saved = tmp_path / 'w.npy'
    dl.value.save_as(saved)
    assert np.load(saved).shape == (1, 14, 512)
    page.locator('#model3d canvas').first.wait_for(timeout=180_000)
    # Export the turned face: gen's files again, with the mesh and (with the "video" extra) the orbit video.
    from eg3d_regressor_plugin.errors import extra_available
    page.locator('#export').click()
    last = 'orbit.mp4' if extra_available('video') else 'shape.glb'
    page.locator(f'#files a[download="{last}"]').first.wait_for(timeout=180_000)
    # Not an image: a message on the page, and the server goes on serving.
    _upload(page, '#photo', not_an_image)
    err = _error_text(page)
    assert 'notes.png: not an image' in err, err
    assert 'not an image' in page.locator('#status').inner_text()
    _close_toasts(page)


@pytest.mark.eg3d
@pytest.mark.browser
def test_photo_in_browser(page, tmp_path):
    """A real photo, aligned on the server (dlib): the crop and the reconstruction appear."""
    from eg3d_regressor_plugin.errors import extra_available
    if not extra_available('align'):
        pytest.skip('needs the "align" extra (dlib) to align a photo')
    import skimage.data
    from eg3d_regressor_plugin.files import save_image
    photo = save_image(tmp_path / 'astronaut.png', skimage.data.astronaut()) or tmp_path / 'astronaut.png'
    page.locator('#no-align input').uncheck()
    old_crop, old_view = _src(page, '#crop'), _src(page, '#view')
    page.locator('#photo button[aria-label="Clear"]').first.click() if page.locator(
        '#photo button[aria-label="Clear"]').count() else None
    _upload(page, '#photo', photo)
    _wait_new_src(page, '#crop', old_crop)
    _wait_new_src(page, '#view', old_view)
    assert 'Predicted pose' in page.locator('#status').inner_text()
    page.locator('#model3d canvas').first.wait_for(timeout=180_000)
    shot = os.environ.get('APP_SCREENSHOT')
    if shot:  # the README's picture: APP_SCREENSHOT=docs/images/app.png pytest -m browser
        page.wait_for_timeout(3000)
        page.evaluate("document.querySelectorAll('.toast-wrap').forEach(e => e.remove())")
        page.screenshot(path=shot, full_page=True)
