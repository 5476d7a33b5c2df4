"""The local web page of `eg3d-regress app`: one face photo -> EG3D's w and camera pose -> the
reconstruction, new viewpoints, depth, an interactive coloured mesh, InterFaceGAN edits, an
interpolation between two faces, and the files `gen` writes.

Why Gradio: it is the field's convention for demos of GAN inversion and 3D-aware faces (the
Hugging Face Spaces of EG3D-based and StyleGAN inversion papers are nearly all Gradio apps), so a
visitor knows the page; and it brings what this page needs without a web front end of our own:
image upload, clipboard paste and webcam sources (gr.Image), sliders with change/release events,
a glTF viewer (gr.Model3D), file downloads, progress bars that follow tqdm, per-visitor state
(gr.State) and a request queue, so one generator serves visitors one request at a time.

Layout of this module: the page's work is done by plain functions (`reconstruct_upload`,
`rerender`, `update_code`, `upload_second`, `make_mesh`, `export_current`) that take an
`AppState` (the generator, the inverter, the boundaries, the device: loaded once) and a visitor's
session dict, return plain values (uint8 images, floats, paths) and raise errors.UserError for a
visitor's mistake; they can be tested without a browser or Gradio. `build` wires them into a
gr.Blocks page and turns a UserError into a gr.Error shown on the page (the server keeps
running); `launch` serves it. Everything is made by the library code `gen` uses
(inputs.load_input/reconstruct, outputs.write_outputs, meshes, render, latent_interp): there is no
second pipeline.

Privacy: each visitor's files are written in their own folder (tempfile.mkdtemp, made on the
visitor's first request, under one folder of this server process), removed when the visitor's
session ends (gr.State's delete_callback) and, with the rest, when the server exits; Gradio's own
copies of served files are cleared by the Blocks' delete_cache.
"""

import atexit
import math
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from . import cameras, render
from .errors import UserError

# One visitor's request at a time on the generator (Gradio's queue; the lock also covers calls
# made directly, e.g. by tests or the benchmark).
CONCURRENCY_ID = 'generator'
MAX_FILE_SIZE = '25mb'          # Gradio refuses larger uploads on the page with its own message
MAX_REFINE_STEPS = 500
YAW_RANGE_DEG = 60.0            # slider ranges, around the frontal view
PITCH_RANGE_DEG = 30.0


class AppState:
    """What the page serves, loaded once: generator G, an invert.Inverter for it, the edit
    boundaries {name: array as boundaries.load_boundary returns}, the device, the mesh
    resolution and the orbit video's length."""

    def __init__(self, G, inverter, device='cpu', boundaries=None, shape_res=128, video_frames=60, fps=30,
                 root=None):
        self.G = G
        self.inverter = inverter
        self.device = torch.device(device)
        self.boundaries = dict(boundaries or {})
        self.shape_res = int(shape_res)
        self.video_frames = int(video_frames)
        self.fps = int(fps)
        self.lock = threading.Lock()
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix='eg3d-regress-app-'))
        self.root.mkdir(parents=True, exist_ok=True)
        self.num_ws = int(G.backbone.num_ws)
        atexit.register(shutil.rmtree, str(self.root), True)

    @classmethod
    def load(cls, network_pkl, regressor_path, device='auto', boundaries=(), eg3d=None, **kwargs):
        """Load the generator and the regressor (once) and the boundaries given as NAME=PATH."""
        from . import bridge, devices
        from .invert import Inverter
        from .boundaries import load_boundary
        parsed = parse_boundaries(boundaries)
        device = devices.get_device(device)
        G = bridge.load_generator(network_pkl, device=device, eg3d=eg3d)
        inverter = Inverter(G, regressor_path, device=device)
        loaded = {name: load_boundary(path, G=G)[0] for name, path in parsed.items()}
        return cls(G, inverter, device=device, boundaries=loaded, **kwargs)


def parse_boundaries(specs):
    """['smile=b/smile.npy', ...] -> {'smile': 'b/smile.npy'}; refuses a spec without NAME= or a
    name given twice."""
    out = {}
    for spec in specs or ():
        name, sep, path = str(spec).partition('=')
        name = name.strip()
        if not sep or not name or not path.strip():
            raise UserError(f'--boundary {spec!r}: expected NAME=PATH (e.g. smile=boundaries/smile.npy)')
        if name in out:
            raise UserError(f'--boundary {spec!r}: the name {name!r} is given twice')
        out[name] = path.strip()
    return out

#----------------------------------------------------------------------------
# Sessions: one temporary folder per visitor.

def new_session(app):
    """A visitor's state: their own folder (mode 0700, under the server's folder) and, once a
    face is reconstructed, its codes."""
    return dict(dir=tempfile.mkdtemp(prefix='session-', dir=app.root), count=0)


def close_session(session):
    """Remove a visitor's folder (gr.State's delete_callback: the session ended)."""
    if isinstance(session, dict) and session.get('dir'):
        shutil.rmtree(session['dir'], ignore_errors=True)


def _new_folder(session, name):
    """A fresh folder for one set of outputs in the visitor's folder; the previous set (its files
    already handed to the page) is removed, so a session holds one at a time."""
    previous = session.get(name)
    session['count'] += 1
    folder = Path(session['dir']) / f'{name}-{session["count"]:04d}'
    folder.mkdir()
    session[name] = str(folder)
    if previous:
        shutil.rmtree(previous, ignore_errors=True)
    return folder


def _require_face(session):
    if not session or session.get('w_base') is None:
        raise UserError('no face yet: upload a photo first')

#----------------------------------------------------------------------------
# Handlers.

def _read_image(app, image, align, what='the photo'):
    """An uploaded image (a file path, as gr.Image(type='filepath') gives, or a uint8 array) ->
    the aligned crop at the generator's resolution, by inputs.load_input (gen's reader and
    aligner). Error messages name the file by its name, not the server's path."""
    from .inputs import load_input
    if image is None:
        raise UserError(f'no image: upload {what} (or paste it, or take one with the webcam)')
    if isinstance(image, np.ndarray):  # an array (a caller of the library): the same reader, from a file
        from .files import save_image
        with tempfile.TemporaryDirectory(dir=app.root) as tmp:
            save_image(Path(tmp) / 'upload.png', np.asarray(image, dtype=np.uint8)[..., :3])
            return _read_image(app, str(Path(tmp) / 'upload.png'), align, what)
    path = Path(image)
    if align:
        from .errors import require_extra
        try:
            require_extra('align')
        except UserError as e:
            raise UserError(f'{e} (or tick "already aligned")') from None
    try:
        img, face = load_input(path, align=align, size=app.G.img_resolution)
    except UserError as e:
        msg = str(e).replace(str(path), path.name)
        if 'no face found' in msg:
            msg = msg.replace('use --no-align', 'tick "already aligned"')
        raise UserError(msg) from None
    return img, face


def _load_png(path):
    import PIL.Image
    with PIL.Image.open(path) as im:
        return np.asarray(im.convert('RGB'))


def reconstruct_upload(app, session, image, no_align=False, refine_steps=0, progress=False):
    """An uploaded photo -> dict(session, crop (the aligned input), reconstruction (at the
    predicted pose), yaw_deg, pitch_deg (predicted), depth (uint8), files (w.npy, c.npy,
    pose.json ... as `gen` writes them, by outputs.write_outputs), folder)."""
    from .invert import reconstruct
    from .outputs import write_outputs
    refine_steps = int(refine_steps or 0)
    if not 0 <= refine_steps <= MAX_REFINE_STEPS:
        raise UserError(f'refinement steps: {refine_steps} is out of range (0 to {MAX_REFINE_STEPS})')
    img, face = _read_image(app, image, align=not no_align)
    session = session or new_session(app)  # only now: a failed first upload leaves no folder behind
    with app.lock:
        rec = reconstruct(app.G, app.inverter, img, refine_steps=refine_steps, progress=progress)
        folder = _new_folder(session, 'face')
        name = Path(image).name if isinstance(image, (str, Path)) else 'upload'
        write_outputs(folder, app.G, img, rec, views=3,
                      meta=dict(source=name, face=face or None, refine_steps=refine_steps))
    yaw, pitch = float(rec['yaw'][0]), float(rec['pitch'][0])
    session.update(img=img, w_base=rec['w'].detach(), w=rec['w'].detach(), w2=None, yaw=yaw, pitch=pitch,
                   c=rec['c'].detach(), mesh=None)
    files = [str(folder / n) for n in ('w.npy', 'c.npy', 'pose.json') if (folder / n).is_file()]
    return dict(session=session, crop=img, reconstruction=_load_png(folder / 'reconstruction.png'),
                yaw_deg=math.degrees(yaw), pitch_deg=math.degrees(pitch), depth=_load_png(folder / 'depth.png'),
                files=files, folder=str(folder))


def camera(app, yaw_deg, pitch_deg):
    """The camera label [1, 25] of a viewpoint given in degrees (cameras.pose_to_label)."""
    return cameras.pose_to_label(math.radians(float(yaw_deg)), math.radians(float(pitch_deg)), device=app.device)


def rerender(app, session, yaw_deg, pitch_deg):
    """The current face (with its edits and interpolation) from a new viewpoint (degrees): one
    render.render_image, as `gen` renders. Returns uint8 [H, W, 3]."""
    _require_face(session)
    c = camera(app, yaw_deg, pitch_deg)
    with app.lock:
        img, _ = render.render_image(app.G, session['w'], c)
    return img


def current_code(app, session, t=0.0, edits=()):
    """w of the session: the face, interpolated toward the second face by t (latent_interp.lerp)
    when there is one, then moved along each boundary (latent_interp.edit) by its strength, on
    its levels. edits: [(name, strength, layers string)]."""
    from .latent_interp import edit, lerp
    _require_face(session)
    w = session['w_base']
    if session.get('w2') is not None and float(t):
        w = lerp(w, session['w2'], float(t))
    for name, strength, layers in edits:
        if name not in app.boundaries:
            raise UserError(f'boundary {name!r}: not loaded (start the app with --boundary {name}=PATH)')
        if float(strength):
            try:
                w = edit(w, app.boundaries[name], [float(strength)], layers=(layers or None))
            except UserError as e:
                raise UserError(f'{name} layers: {e}') from None
    return w.to(app.device).float()


def update_code(app, session, yaw_deg, pitch_deg, t=0.0, edits=()):
    """Recompute the session's w (current_code) and render it at the sliders' viewpoint."""
    session['w'] = current_code(app, session, t, edits)
    return rerender(app, session, yaw_deg, pitch_deg)


def upload_second(app, session, image, no_align=False):
    """The second face of the interpolation: its w by the same regressor (invert.Inverter).
    Returns its aligned crop."""
    _require_face(session)
    img, _ = _read_image(app, image, align=not no_align, what='a second photo')
    with app.lock, torch.no_grad():
        session['w2'] = app.inverter(img)['w'].detach().float()
    return img


def _mesh_files(app, session, folder, progress=False):
    """The coloured mesh of the session's w (meshes.coloured_mesh, as gen --shape-format) as
    shape.glb and shape.ply in folder. Returns (glb, ply)."""
    from .meshes import coloured_mesh, save_mesh
    with app.lock:
        mesh = coloured_mesh(app.G, session['w'], app.shape_res, progress=progress)
    if len(mesh.faces) == 0:
        raise UserError('the shape has no surface at this code (the density never reaches the surface level)')
    return save_mesh(Path(folder) / 'shape.glb', mesh), save_mesh(Path(folder) / 'shape.ply', mesh)


def make_mesh(app, session, progress=False):
    """The 3D view of the reconstruction: shape.glb and shape.ply beside its other files.
    Returns (glb path, every download file of the face)."""
    _require_face(session)
    folder = Path(session['face'])
    glb, ply = _mesh_files(app, session, folder, progress=progress)
    session['mesh'] = str(folder)
    files = [str(folder / n) for n in ('w.npy', 'c.npy', 'pose.json')] + [str(ply), str(glb)]
    return str(glb), files


def export_current(app, session, yaw_deg, pitch_deg, video=True, progress=False):
    """Every output of the current face (its edits and interpolation applied) at the sliders'
    viewpoint, written by outputs.write_outputs as `gen` writes it (w.npy, c.npy, pose.json, the
    images, with `video` orbit.mp4), plus shape.ply and shape.glb. Returns (glb, files)."""
    from .outputs import write_outputs
    _require_face(session)
    if video:
        from .errors import require_extra
        require_extra('video')
    c = camera(app, yaw_deg, pitch_deg)
    folder = _new_folder(session, 'export')
    dev = session['w'].device
    rec = dict(w=session['w'], w_regressor=session['w'], c=c, history=None, seconds={},
               yaw=torch.tensor([session['yaw']], device=dev), pitch=torch.tensor([session['pitch']], device=dev))
    with app.lock:
        write_outputs(folder, app.G, session['img'], rec, views=3, video=video, video_frames=app.video_frames,
                      fps=app.fps, meta=dict(source='app', edited=not torch.equal(session['w'], session['w_base'])))
    glb, ply = _mesh_files(app, session, folder, progress=progress)
    names = ['w.npy', 'c.npy', 'pose.json', 'shape.ply', 'shape.glb'] + (['orbit.mp4'] if video else [])
    return str(glb), [str(folder / n) for n in names]

#----------------------------------------------------------------------------
# The page.

def guarded(fn, outputs=1, status=None):
    """Run a handler; a visitor's mistake (a UserError) leaves the page as it was and shows
    the message (a toast, and the status line when the event has one) instead of Gradio's
    error overlay on every output. The server goes on serving."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            gr.Warning(str(e), duration=None)
            out = [gr.skip()] * outputs
            if status is not None:
                out[status] = f'**Error:** {e}'
            return out[0] if outputs == 1 else tuple(out)
    return run


def photo_input(**kwargs):
    """gr.Image that hands the uploaded file's path to the handler even when Pillow cannot
    open it, so the handler's reader (images.load_image) says what is wrong with the file
    instead of Gradio's bare exception (with the server's path in it). The instance's
    preprocess is wrapped: a subclass would make Gradio write a .pyi stub beside this module."""
    import gradio as gr
    component = gr.Image(type='filepath', image_mode=None, sources=['upload', 'clipboard', 'webcam'], **kwargs)
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception:  # noqa: BLE001 the handler reports it
            path = getattr(payload, 'path', None)
            return str(path) if path else None
    component.preprocess = preprocess
    return component


def build(app, title='EG3D regressor'):
    """The gr.Blocks page over `app` (an AppState)."""
    import gradio as gr

    names = list(app.boundaries)
    queue = dict(concurrency_limit=1, concurrency_id=CONCURRENCY_ID)

    with gr.Blocks(title=title, delete_cache=(600, 3600)) as demo:
        session = gr.State(None, delete_callback=close_session)
        gr.Markdown(f'## {title}\nUpload a face photo: the regressor predicts EG3D\'s latent code w and the camera '
                    'pose in one forward pass; move the sliders to see the face from another viewpoint.')
        with gr.Row():
            with gr.Column(scale=1):
                photo = photo_input(label='Photo', elem_id='photo')
                no_align = gr.Checkbox(label='Already aligned (an EG3D-style crop, e.g. an EG3D render): no face '
                                             'alignment', value=False, elem_id='no-align')
                refine = gr.Number(label='Refinement steps (W+ optimisation after the regressor; 0: none)', value=0,
                                   minimum=0, maximum=MAX_REFINE_STEPS, precision=0, elem_id='refine')
                go = gr.Button('Reconstruct', variant='primary', elem_id='go')
                status = gr.Markdown('', elem_id='status')
            with gr.Column(scale=2):
                with gr.Row():
                    crop = gr.Image(label='Aligned input', type='numpy', interactive=False, height=280, elem_id='crop')
                    view = gr.Image(label='Reconstruction', type='numpy', interactive=False, height=280, elem_id='view')
                    depth = gr.Image(label='Depth (near = bright)', type='numpy', interactive=False, height=280,
                                     elem_id='depth')
                with gr.Row():
                    yaw = gr.Slider(-YAW_RANGE_DEG, YAW_RANGE_DEG, value=0, step=1, label='Yaw (degrees)',
                                    elem_id='yaw')
                    pitch = gr.Slider(-PITCH_RANGE_DEG, PITCH_RANGE_DEG, value=0, step=1, label='Pitch (degrees)',
                                      elem_id='pitch')
        with gr.Row():
            model3d = gr.Model3D(label='3D shape (coloured mesh)', elem_id='model3d')
            with gr.Column():
                strengths, layers = [], []
                if names:
                    gr.Markdown('**Edits** (InterFaceGAN boundaries: strength, W+ levels)')
                for name in names:
                    with gr.Row():
                        strengths.append(gr.Slider(-5, 5, value=0, step=0.1, label=name, elem_id=f'edit-{name}'))
                        layers.append(gr.Textbox(value='all', label=f'{name} levels (e.g. 0-7, coarse, all)',
                                                 elem_id=f'layers-{name}'))
                gr.Markdown('**Interpolation** toward a second face')
                with gr.Row():
                    photo2 = photo_input(label='Second photo', height=200, elem_id='photo2')
                    crop2 = gr.Image(label='Second face (aligned)', type='numpy', interactive=False, height=200,
                                     elem_id='crop2')
                t = gr.Slider(0, 1, value=0, step=0.05, label='t (0: first face, 1: second)', elem_id='t')
        with gr.Row():
            export = gr.Button('Export the current face (edits, view) with an orbit video', elem_id='export')
            files = gr.File(label='Downloads (the files gen writes)', file_count='multiple', interactive=False,
                            elem_id='files')

        def edit_args(values):
            return [(n, s, l) for n, s, l in zip(names, values[0::2], values[1::2])]

        edit_inputs = [c for pair in zip(strengths, layers) for c in pair]

        def on_upload(sess, image, aligned, steps, progress=gr.Progress(track_tqdm=True)):
            out = reconstruct_upload(app, sess, image, no_align=aligned, refine_steps=steps, progress=bool(steps))
            msg = (f'Predicted pose: yaw {out["yaw_deg"]:.1f}°, pitch {out["pitch_deg"]:.1f}°'
                   + (f' (refined for {int(steps)} steps)' if steps else ''))
            return (out['session'], out['crop'], out['reconstruction'], out['depth'], round(out['yaw_deg']),
                    round(out['pitch_deg']), msg, out['files'], 0, None, None, *([0] * len(names)))

        def on_view(sess, y, p):
            return guarded(rerender)(app, sess, y, p) if sess and sess.get('w') is not None else gr.skip()

        def on_code(sess, y, p, tt, *values):
            if not (sess and sess.get('w_base') is not None):
                return gr.skip()
            return guarded(update_code)(app, sess, y, p, tt, edit_args(values))

        def on_second(sess, image, aligned, y, p, tt, *values):
            if image is None:
                return gr.skip(), gr.skip()
            img = upload_second(app, sess, image, no_align=aligned)
            return img, update_code(app, sess, y, p, tt, edit_args(values))

        def on_mesh(sess):
            if not (sess and sess.get('face')) or sess.get('mesh') == sess['face']:
                return gr.skip(), gr.skip()  # no face, or its mesh is shown already
            return guarded(make_mesh, 2)(app, sess)

        def on_export(sess, y, p, progress=gr.Progress(track_tqdm=True)):
            from .errors import extra_available
            return export_current(app, sess, y, p, video=extra_available('video'))

        # A new face starts afresh: no second face, no edits, the 3D view follows (on_mesh).
        recon_outputs = [session, crop, view, depth, yaw, pitch, status, files, t, model3d, crop2, *strengths]
        # API names: gradio_client (benchmarks/app_latency.py) calls /reconstruct and /rerender.
        for trigger, api in ((go.click, 'reconstruct'), (photo.upload, 'reconstruct_on_upload')):
            trigger(guarded(on_upload, len(recon_outputs), status=6), [session, photo, no_align, refine], recon_outputs,
                    api_name=api, **queue).then(on_mesh, [session], [model3d, files], api_name=f'mesh_after_{api}',
                                                **queue)
        # .change follows the slider while it moves (always_last: a render queued behind another is
        # replaced by the newest position) and fires once when it is set by a reconstruction.
        for slider, api in ((yaw, 'rerender'), (pitch, 'rerender_pitch')):
            slider.change(on_view, [session, yaw, pitch], [view], trigger_mode='always_last',
                          show_progress='hidden', api_name=api, **queue)
        for comp in [t, *strengths]:
            comp.release(on_code, [session, yaw, pitch, t, *edit_inputs], [view], trigger_mode='always_last',
                         show_progress='hidden', **queue)
        for box in layers:
            box.submit(on_code, [session, yaw, pitch, t, *edit_inputs], [view], **queue)
        photo2.upload(guarded(on_second, 2), [session, photo2, no_align, yaw, pitch, t, *edit_inputs], [crop2, view],
                      **queue)
        export.click(guarded(on_export, 2), [session, yaw, pitch], [model3d, files], **queue)
    return demo


def launch(app, host='127.0.0.1', port=None, share=False, block=True, quiet=False):
    """Serve the page of `app` on host:port (Gradio's queue: one request at a time on the
    generator). No public link unless `share`. Returns the gr.Blocks (running in a thread
    when not `block`)."""
    demo = build(app)
    demo.queue(default_concurrency_limit=1, max_size=64)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                max_file_size=MAX_FILE_SIZE, show_error=True, quiet=quiet, inbrowser=False)
    return demo
