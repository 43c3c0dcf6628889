"""Array-generic helpers (torch-free): one task function runs on numpy arrays (the CPU env, the
robot runtime) and on torch tensors (the MuJoCo Warp env, on the GPU) through the array API
(``array_api_compat``).

>>> xp = namespace(x)                          # numpy or torch, by what x is
>>> y = xp.concat([x, like(offsets, x)], axis=1)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device as _device, is_numpy_array


def namespace(*arrays: Any) -> Any:
    """The array namespace (array-API functions) of ``arrays`` (None entries are ignored)."""
    return array_namespace(*[a for a in arrays if a is not None])


def device(x: Any) -> Any:
    """The device ``x`` lives on (``"cpu"`` for numpy arrays)."""
    return _device(x)


def like(value: Any, x: Any) -> Any:
    """``value`` (a numpy constant of a task: default pose, gains, limits) as an array of
    ``x``'s kind, floating dtype and device. Numpy stays numpy (no copy); a torch conversion is
    cached on the numpy array's id, so constants cross to the GPU once."""
    if is_numpy_array(x) or isinstance(x, (float, int)):
        return value
    key = (id(value), str(x.dtype), str(_device(x)))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is value:
        return hit[1]
    xp = array_namespace(x)
    out = xp.asarray(np.asarray(value), dtype=x.dtype, device=_device(x))
    _CACHE[key] = (value, out)
    return out


_CACHE: dict[tuple, tuple[Any, Any]] = {}
