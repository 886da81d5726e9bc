"""Deep tests run on the torch backend, whatever the environment says."""

import os

os.environ["KERAS_BACKEND"] = "torch"
