"""What a training run prints: stdout copied into the run's log file, and durations in words."""

import sys


class Tee:
    """Copy stdout to a file (EG3D's dnnlib.util.Logger, without redirecting stderr)."""

    def __init__(self, path):
        self.file = open(path, 'a')
        self.stdout = sys.stdout
        sys.stdout = self

    def write(self, text):
        self.file.write(text)
        self.stdout.write(text)
        self.flush()

    def flush(self):
        self.file.flush()
        self.stdout.flush()

    def close(self):
        if sys.stdout is self:
            sys.stdout = self.stdout
        self.file.close()


def format_time(seconds):
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 3600:
        return f'{s // 60}m {s % 60:02d}s'
    return f'{s // 3600}h {(s // 60) % 60:02d}m'
