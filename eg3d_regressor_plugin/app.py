"""A local web page (Gradio) over the regressor: upload a face photo, see it reconstructed in 3D,
turn it, edit it, download what `gen` writes."""

import click

from .options import Command, device_option, eg3d_option, network_option, regressor_option

#----------------------------------------------------------------------------

@click.command('app', cls=Command)
@network_option()
@regressor_option()
@click.option('--boundary', 'boundaries', multiple=True, metavar='NAME=PATH',
              help='An InterFaceGAN boundary (from `boundary`) to edit with, as a slider NAME; repeatable')
@click.option('--host', default='127.0.0.1', show_default=True,
              help='Address to listen on (0.0.0.0: every interface of this machine)')
@click.option('--port', type=click.IntRange(0, 65535), default=None, metavar='N',
              help='Port  [default: 7860, or the next free one]')
@click.option('--share', is_flag=True, help='Also open a public *.gradio.live link (off: the page stays local)')
@click.option('--shape-res', type=click.IntRange(min=16), default=128, show_default=True,
              help='Resolution of the mesh grid of the 3D view and the mesh downloads')
@click.option('--video-frames', type=click.IntRange(min=2), default=60, show_default=True,
              help='Frames of the orbit video download')
@eg3d_option
@device_option
def app(network_pkl, regressor_path, boundaries, host, port, share, shape_res, video_frames, eg3d, device):
    """Serve a local web page: upload (or paste, or take with the webcam) a face photo and see the
    aligned crop, the reconstruction at the predicted pose, the predicted yaw/pitch and the depth
    map; turn the face with yaw/pitch sliders, look at its coloured mesh in 3D, edit it along
    --boundary directions, interpolate toward a second face, refine it, and download w.npy,
    c.npy, pose.json, the mesh (.ply, .glb) and an orbit video (.mp4) -- the files `gen` writes,
    made by the same code.

    The network and the regressor are loaded once; requests are queued and run one at a time on
    the generator. The page listens on 127.0.0.1 only, unless --host; there is no public link
    unless --share. Each visitor's files stay in their own temporary folder, removed when the
    visit ends. Needs the "app" extra (gradio); photos that need aligning need "align", the video
    "video".

    Examples:

    \b
    eg3d-regress app --network=G.pkl --regressor=regressor.pt
    eg3d-regress app --network=ffhq512-128.pkl --regressor=regressor.pt \\
        --boundary smile=boundaries/smile.npy --boundary age=boundaries/age.npy --port 8080
    """
    from .errors import require_extra
    require_extra('app')
    from . import webapp
    webapp.parse_boundaries(boundaries)  # a malformed NAME=PATH fails before anything loads
    state = webapp.AppState.load(network_pkl, regressor_path, device=device, boundaries=boundaries, eg3d=eg3d,
                                 shape_res=shape_res, video_frames=video_frames)
    click.echo(f'Serving on http://{host}:{port or "7860+"} (Ctrl+C stops)', err=True)
    webapp.launch(state, host=host, port=port, share=share)


if __name__ == '__main__':
    app()  # pylint: disable=no-value-for-parameter
