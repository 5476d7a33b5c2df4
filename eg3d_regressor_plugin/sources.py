"""The faces a command starts from: an image (through the regressor, invert.py) or a latent code
file, each turned into (w, camera label, yaw, pitch). Beside invert.py rather than in it: it adds
the code files and their cameras to the one image -> w path that gen and eval also use."""

from pathlib import Path

import numpy as np
import torch

from . import cameras
from .codes import load_code
from .errors import UserError, require_extra


def load_camera(path):
    """A camera label file (gen's c.npy) -> float32 [1, 25]."""
    try:
        c = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UserError(f'camera file {path} is not a .npy array ({type(e).__name__})') from None
    if c.size != 25 or not np.all(np.isfinite(c)):
        raise UserError(f'camera file {path} has shape {c.shape}; expected [1, 25] finite values (EG3D\'s label)')
    return c.reshape(1, 25).astype(np.float32)


def is_code(spec):
    """A .npy file is a latent code; anything else is an image."""
    return Path(spec).suffix.lower() == '.npy'


def tuned_name(path):
    """The name of a tuned face: its file's stem, or its folder's name for gen's tuned.pt."""
    p = Path(path).resolve()
    return p.parent.name if p.stem == 'tuned' and p.parent.name else p.stem


class Sources:
    """Turns each image or code file into dict(w [1,num_ws,w_dim], c [1,25], yaw, pitch, source).
    Images go through the regressor (loaded once, on first use); codes are .npy files whose
    camera, for pose 'predicted', is the c.npy beside them (as gen writes it), else the frontal
    camera."""

    def __init__(self, G, regressor=None, pose='predicted', align=True, face_index=None, device='cpu'):
        self.G, self.regressor, self.pose, self.align, self.face_index = G, regressor, pose, align, face_index
        self.device = torch.device(device)
        self._inverter = None

    is_code = staticmethod(is_code)

    @staticmethod
    def check(specs, regressor, align):
        """Checks that need no network: files exist; images come with a regressor and the align extra."""
        for spec in specs:
            p = Path(spec)
            if not p.exists():
                raise UserError(f'{spec}: no such file')
            if not is_code(spec) and p.is_dir():
                raise UserError(f'{spec} is a folder; give one image or one w .npy file')
        images = [s for s in specs if not is_code(s)]
        if images and regressor is None:
            raise UserError(f'{images[0]} is an image: turning it into w needs --regressor R.pt (or give a w .npy)')
        if images and align:
            require_extra('align')

    def _camera(self, yaw, pitch, c_predicted):
        if self.pose == 'predicted':
            return c_predicted, yaw, pitch
        if self.pose == 'frontal':
            yaw, pitch = 0.0, 0.0
        else:
            yaw, pitch = self.pose
        return cameras.pose_to_label(yaw, pitch, device=self.device), yaw, pitch

    def _code(self, spec):
        G = self.G
        w = load_code(spec, int(G.backbone.num_ws), int(G.w_dim))
        w = torch.from_numpy(w).to(self.device)
        c_file = Path(spec).with_name('c.npy')
        if not c_file.is_file():
            return w, cameras.frontal_label(1, device=self.device), 0.0, 0.0
        c = torch.from_numpy(load_camera(c_file)).to(self.device)
        yaw, pitch, _ = cameras.label_to_pose(c.cpu())
        return w, c, float(yaw[0]), float(pitch[0])

    def _image(self, spec):
        from .inputs import load_input
        from .invert import Inverter
        G = self.G
        if self._inverter is None:
            self._inverter = Inverter(G, self.regressor, device=self.device)
        img, _ = load_input(spec, align=self.align, face_index=self.face_index, size=G.img_resolution)
        with torch.no_grad():
            inv = self._inverter(img, pose='predicted')
        return inv['w'].float(), inv['c'].float(), float(inv['yaw'][0]), float(inv['pitch'][0])

    def __call__(self, spec):
        w, c, yaw, pitch = self._code(spec) if is_code(spec) else self._image(spec)
        return self.face(w, c, yaw, pitch, spec)

    def tuned(self, path):
        """(G_tuned, face dict) of a tuned-face file (gen --tune-steps's tuned.pt) loaded onto the
        base generator, which must be the one it was tuned from (tuning.load_tuned refuses
        another); pose 'predicted' is the file's camera, kept as c_own, yaw_own, pitch_own."""
        from .tuning import load_tuned
        G_t, w, c, _ = load_tuned(path, self.G)
        yaw, pitch, _ = cameras.label_to_pose(c.cpu())
        src = self.face(w.to(self.device), c.to(self.device), float(yaw[0]), float(pitch[0]), path)
        return G_t, dict(src, c_own=c.to(self.device), yaw_own=float(yaw[0]), pitch_own=float(pitch[0]))

    def face(self, w, c, yaw, pitch, source):
        """The face dict of a code w with its own camera c (yaw, pitch), at the camera `pose` asks for."""
        c, yaw, pitch = self._camera(yaw, pitch, c)
        return dict(w=w.float(), c=c.float(), yaw=float(yaw), pitch=float(pitch), source=str(source))
