"""eg3d-regressor-plugin: predict EG3D's w (14 x 512) and the camera pose from one face image.

EG3D itself is imported at run time from a checkout (see eg3d.py), never copied here.
"""

__version__ = '0.1.0'
