import os
import sys

from . import ahead

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while torch and OpenCV are imported: nothing has started
    sys.exit(130)

code = main(process=True)
if not ahead.settle():  # a thread still inside OpenCV/torch: skip the teardown that would race it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
