"""Real photos that installed packages ship, for the Caffe SSD parity tests (no copies stored).

scikit-image's sample data (``skimage/data``: NASA's astronaut Eileen Collins, public domain; the
cameraman; a coffee cup and Stefan van der Walt's cat Chelsea, CC0) and matplotlib's
``grace_hopper.jpg``. Files are found by package location without importing the packages.
"""

import importlib.util
from pathlib import Path

__all__ = ['PHOTOS', 'photo_path']

# name -> (package, path inside the package)
PHOTOS = {
    'astronaut': ('skimage', 'data/astronaut.png'),  # a face, 512x512
    'grace_hopper': ('matplotlib', 'mpl-data/sample_data/grace_hopper.jpg'),  # a face, 512x600
    'camera': ('skimage', 'data/camera.png'),  # a face in profile, grayscale, 512x512
    'coffee': ('skimage', 'data/coffee.png'),  # no face, 600x400
    'chelsea': ('skimage', 'data/chelsea.png'),  # a cat, no face, 451x300
}


def photo_path(name: str) -> Path:
    """Path of photo ``name`` (a key of :data:`PHOTOS`) in its installed package."""
    package, relative = PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f'photo {name!r} ships with the {package!r} package, which is not installed '
            '(pip install -r requirements/tests.txt)'
        )
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f'photo {name!r}: {path} not found in the installed {package!r}')
    return path
