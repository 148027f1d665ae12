"""Arrays from the env's world: numpy by default; torch (CPU and CUDA) first-class; JAX and
CuPy accepted through the array API / DLPack.

The namespace of an array comes from ``array-api-compat``; torch is imported only when
an array is already a tensor (``import varirec`` never imports it).

- :func:`is_tensor` — a torch tensor, tested without importing torch.
- :class:`ArrayWorld` — the env's device and value dtype, adopted from the first tensor
  an env hands in; it normalizes env ids and per-env arrays and places drawn values on
  the device, with errors that name the tensor, the device and the fix.
- :func:`to_host` — a host numpy array of any array (a view for numpy and CPU tensors).

>>> world = ArrayWorld()
>>> world.ids([0, 3], num_envs=4).tolist()
[0, 3]
>>> world.is_torch    # numpy until the env hands in a tensor
False
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "ArrayWorld",
    "cpu_view",
    "device_async",
    "host_async",
    "is_tensor",
    "namespace",
    "off_host",
    "pinned",
    "record_event",
    "to_host",
    "wait",
]


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (array-api-compat checks without importing torch)."""
    return not isinstance(x, np.ndarray) and array_api_compat.is_torch_array(x)


def namespace(x: Any) -> Any:
    """The array-API namespace of ``x`` (numpy for lists and scalars)."""
    if isinstance(x, np.ndarray) or not array_api_compat.is_array_api_obj(x):
        return np
    return array_api_compat.array_namespace(x)


def _foreign(x: Any) -> bool:
    """An array of another library (JAX, CuPy, any DLPack producer), not numpy's."""
    return array_api_compat.is_array_api_obj(x) or hasattr(x, "__dlpack__")


def _describe(x: Any) -> str:
    shape = tuple(getattr(x, "shape", ()))
    return f"{type(x).__module__.split('.')[0]} {getattr(x, 'dtype', '?')} shape {shape}"


def to_host(x: Any, name: str = "array") -> np.ndarray:
    """``x`` as a numpy array on the host: numpy and CPU tensors without a copy; CUDA
    tensors, JAX and CuPy arrays copied (the one host transfer, made here on purpose)."""
    if isinstance(x, np.ndarray):
        return x
    if is_tensor(x):
        if x.requires_grad:
            raise ValueError(
                f"`{name}` is a tensor that requires grad ({_describe(x)}); varirec records "
                f"values, not graphs: pass {name}.detach()"
            )
        x = x if x.device.type == "cpu" else x.cpu()
        return _numpy_of(x)
    if array_api_compat.is_cupy_array(x):  # on a GPU: DLPack cannot bring it to numpy
        return x.get()
    if array_api_compat.is_jax_array(x) or (
        hasattr(x, "__dlpack__") and not hasattr(x, "__array__")
    ):
        return np.from_dlpack(x)
    return np.asarray(x)


def cpu_view(x: Any) -> np.ndarray | None:
    """``x`` read in place as numpy where it is a torch tensor on the CPU without grad
    (an env's id or step tensor); None for anything else, which the caller checks.

    >>> import numpy as np
    >>> cpu_view(np.arange(3)) is None  # not a tensor
    True
    """
    # is_cpu, not device.type: this runs at every step, and a device object costs 5x
    if not is_tensor(x) or not x.is_cpu or x.requires_grad:
        return None
    try:
        return x.numpy()
    except TypeError:  # a dtype numpy lacks (bfloat16): the checked path converts it
        return None
    except RuntimeError:  # a lazy negation or conjugation (`.conj().imag`): a copy
        return _numpy_of(x)


def _numpy_of(x: Any) -> np.ndarray:
    """CPU tensor ``x`` as numpy: in place where numpy can read it; a bfloat16 (or
    float8) tensor as float32, which holds each value exactly; a lazy negation or
    conjugation resolved first."""
    if x.is_neg() or x.is_conj():
        x = x.resolve_neg().resolve_conj()
    try:
        return x.numpy()
    except TypeError:  # no numpy dtype
        return x.float().numpy()


def host_async(t: Any) -> np.ndarray:
    """A host copy of tensor ``t`` that does not wait for the device: on CUDA a
    ``non_blocking`` copy into a pinned buffer (read it only after :func:`wait` on an
    event recorded after this call); on the CPU a plain copy (already complete), so
    the code that reads it later runs the same way there."""
    if t.device.type == "cpu":
        return _numpy_of(t).copy()  # the caller may change its tensor before it is read
    torch = _torch()
    if t.dtype.is_floating_point and t.dtype.itemsize < 4 and t.dtype != torch.float16:
        t = t.float()  # bfloat16, float8: numpy has no such dtype (float32 holds them)
    dst = torch.empty(t.shape, dtype=t.dtype, pin_memory=pinned())
    dst.copy_(t, non_blocking=True)
    return dst.numpy()


def off_host(device: Any) -> bool:
    """Whether work on ``device``'s tensors runs there with torch (a GPU) rather than on
    the host in numpy (no device, or the CPU, where numpy reads a tensor in place and a
    torch op costs several numpy ones). The reset draws, the outcome accumulators and
    the step rows ask it (``varirec.arrays.off_host``: a test can turn it on for CPU
    torch, to run the device code).

    >>> off_host(None)
    False
    """
    return device is not None and getattr(device, "type", device) != "cpu"


def device_async(x: np.ndarray, device: Any, dtype: Any = None) -> Any:
    """Host array ``x`` (cast to numpy ``dtype`` if given, as numpy rounds) as a tensor on
    ``device`` without a wait for the device: on a GPU, written into pinned memory
    (torch's pinned-memory cache keeps that buffer until the copy has run) and sent with
    ``non_blocking``; a copy from ordinary memory would wait for all the work queued
    before it. On the CPU the tensor shares ``x``'s memory (a cast's, with ``dtype``);
    with no device (a numpy world) ``x`` itself.

    >>> import numpy as np
    >>> device_async(np.arange(3), None)
    array([0, 1, 2])
    """
    if device is None:
        return x
    torch = _torch()
    if getattr(device, "type", device) == "cpu":
        return torch.as_tensor(x if dtype is None else x.astype(dtype))
    want = np.dtype(dtype if dtype is not None else x.dtype)
    kind = _TORCH_DTYPES.get(want)
    if kind is None:
        kind = _TORCH_DTYPES[want] = torch.from_numpy(np.empty(0, want)).dtype
    pin = pinned()
    host = torch.empty(x.shape, dtype=kind, pin_memory=pin)
    host.numpy()[...] = x  # the cast, if any, in the same pass as the copy
    return host.to(device, non_blocking=pin)


def pinned() -> bool:
    """Whether host buffers for the device are pinned (CUDA is there): torch is asked
    once, not at every copy."""
    if not _PINNED:
        _PINNED.append(bool(_torch().cuda.is_available()))
    return _PINNED[0]


_PINNED: list[bool] = []
_TORCH_DTYPES: dict[np.dtype, Any] = {}
"""numpy dtypes and their torch dtypes, as device_async met them."""


def record_event(device: Any) -> Any:
    """A CUDA event recorded now on ``device``'s current stream, or None elsewhere."""
    if device is None or getattr(device, "type", "cpu") != "cuda":
        return None
    event = _torch().cuda.Event()
    event.record(current_stream(device))
    return event


def current_stream(device: Any) -> Any:
    """``torch.cuda.current_stream(device)``, the same object for the same stream: torch
    makes a new ``Stream`` (and switches the device to do so) at each call; here each
    call asks only for the stream's id."""
    torch = _torch()
    index = device.index if device.index is not None else torch.cuda.current_device()
    current = getattr(torch._C, "_cuda_getCurrentStream", None)  # private: may go away
    if current is None:
        return torch.cuda.current_stream(index)
    key = current(index)  # (stream id, device index, device type)
    stream = _STREAMS.get(key)
    if stream is None:
        if len(_STREAMS) >= 64:  # streams made and dropped by the env: keep the map small
            _STREAMS.clear()
        stream = _STREAMS[key] = torch.cuda.current_stream(index)
    return stream


_STREAMS: dict[tuple[int, int, int], Any] = {}


def wait(event: Any) -> None:
    """Block this (writer) thread until ``event`` completed; None: nothing to wait for."""
    if event is not None:
        event.synchronize()


def _float_dtype(dtype: Any) -> Any:
    """``dtype`` checked: None, or a torch floating dtype (values handed to ``apply``)."""
    if dtype is None:
        return None
    torch = _torch()
    if not isinstance(dtype, torch.dtype):
        raise TypeError(
            f"`dtype` must be a torch dtype, got {dtype!r} ({type(dtype).__name__}); pass "
            "e.g. dtype=torch.float32 (or None: float32)"
        )
    if not dtype.is_floating_point:
        raise ValueError(
            f"`dtype` must be a torch floating dtype, got {dtype}: apply would get the values "
            "cut to it (1.35 -> 1) while the draws keep the values drawn; pass "
            "dtype=torch.float32 or torch.float64 (integer and choice variations keep "
            "their own dtypes)"
        )
    return dtype


def _check_available(device: Any, given: Any) -> None:
    """Refuse a CUDA (or MPS) device this torch cannot use, before anything is made."""
    torch = _torch()
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            have = f"{count} CUDA device(s)" if count else "no usable CUDA device"
            raise ValueError(
                f"`device` {given!r} names a CUDA device, but this torch "
                f"({torch.__version__}) sees {have}; pass the device of the env's tensors "
                "(device='cpu' on a machine without a GPU), or install a CUDA build of torch"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"`device` {given!r} names Apple's MPS, which this torch cannot use here; pass "
            "device='cpu'"
        )


class ArrayWorld:
    """The env's array world: its device (None: numpy) and the dtype of applied values.

    Args:
        device: the env's device (``"cuda:0"``, a ``torch.device``, ``"cpu"``), or None
            to take it from the first tensor the env hands in (numpy until then).
        dtype: the torch dtype of float values handed to ``apply`` (default float32).
    """

    def __init__(self, device: Any = None, dtype: Any = None) -> None:
        self.device = None
        self.dtype = _float_dtype(dtype)
        self._sent: tuple[np.ndarray, Any, int | None, int] | None = None  # see on_device
        self._calls = 0  # the ids() calls so far: a tensor's version is scoped by it
        if device is not None:
            import torch

            try:
                self.device = torch.device(device)
            except (RuntimeError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"`device` must name a torch device, got {device!r} "
                    f"({str(exc).splitlines()[0]}); pass the "
                    "device of the env's tensors, e.g. device='cuda:0' or device='cpu' (or "
                    "None: taken from the first tensor the env hands in)"
                ) from None
            _check_available(self.device, device)

    @property
    def is_torch(self) -> bool:
        """Whether the env lives in torch (values are handed to it as tensors)."""
        return self.device is not None

    def adopt(self, x: Any, name: str) -> None:
        """Take the device of tensor ``x`` if none is set; refuse one on another device."""
        if x.is_cpu and self.device is not None and self.device.type == "cpu":
            return  # the usual CPU case, without making a device object per tensor
        if self.device is None or (
            self.device.index is None and x.device.type == self.device.type
        ):  # "cuda" names whichever CUDA device the env's tensors are on
            self.device = x.device
            return
        if x.device != self.device:
            raise ValueError(
                f"`{name}` is on device {x.device} but the env's arrays are on {self.device}; "
                f"pass {name}.to({str(self.device)!r}) (or make the manager with "
                f"device={str(x.device)!r})"
            )

    def check(self, x: Any, name: str) -> None:
        """A tensor ``x`` handed in: on the env's device, without grad."""
        if x.requires_grad:
            raise ValueError(
                f"`{name}` is a tensor that requires grad ({_describe(x)}, on {x.device}); "
                f"varirec records values, not graphs: pass {name}.detach()"
            )
        self.adopt(x, name)

    def ids(self, env_ids: Any, num_envs: int, name: str = "env_ids") -> np.ndarray:
        """``env_ids`` (int ids or a bool mask, any array kind) as host int64 ids,
        unchecked for range (the tracker checks it)."""
        self._calls += 1  # (see on_device)
        if is_tensor(env_ids):
            if env_ids.dtype.is_floating_point or env_ids.dtype.is_complex:
                raise TypeError(  # before the grad check: .long() mends both
                    f"`{name}` must be integer ids or a bool mask, got a "
                    f"{'complex' if env_ids.dtype.is_complex else 'float'} tensor "
                    f"({_describe(env_ids)}, on {env_ids.device}); pass {name}.long() if they "
                    "are whole numbers, or the mask itself"
                )
            self.check(env_ids, name)
            if env_ids.dtype == _torch().bool and tuple(env_ids.shape) != (num_envs,):
                raise ValueError(
                    f"a boolean env mask `{name}` must have shape ({num_envs},), got "
                    f"{tuple(env_ids.shape)} (on {env_ids.device}); pass one bool per env, "
                    f"or the int ids ({name}.nonzero().squeeze(-1))"
                )
            # The ids key the host-side episode counters: one copy to the host per reset.
            host = to_host(env_ids, name)
            if env_ids.dtype == _torch().int64 and env_ids.ndim == 1 and off_host(self.device):
                # on_device gives the env's own tensor back, unless it changed in place
                self._sent = (host, env_ids, _version(env_ids), self._calls)
            return host
        if not isinstance(env_ids, np.ndarray) and _foreign(env_ids):
            return to_host(env_ids, name)  # JAX, CuPy, any DLPack producer
        return np.asarray(env_ids)

    def per_env(self, x: Any, name: str) -> Any:
        """A per-env array from the env (``record_step``): checked, kept where it is."""
        if is_tensor(x):
            self.check(x, name)
            return x
        if isinstance(x, np.ndarray):
            return x
        if _foreign(x):
            return to_host(x, name)  # JAX, CuPy, any DLPack producer
        return x

    def env_ids(self, ids: np.ndarray) -> Any:
        """Host ids as the env takes them (an int64 tensor on its device for torch)."""
        if self.device is None:
            return ids
        if off_host(self.device):
            return self.on_device(ids, in_reset=False)
        return device_async(np.asarray(ids), self.device)

    def on_device(self, ids: np.ndarray, *, in_reset: bool = True) -> Any:
        """Host int ids as an int64 tensor on the (GPU) device, sent without a wait; the
        ids of a reset come back as the env's own tensor, and the ids sent last again
        (a reset's pre-reset and start, the usual case) are sent once.

        A tensor is reused while its version shows no change in place; an inference
        tensor (``torch.inference_mode``, as rsl_rl's rollouts run) has none, and is
        reused only ``in_reset``: within the call that handed in the reset's ids."""
        sent = self._sent
        if (
            sent is not None
            and len(sent[0]) == len(ids)
            and (
                _version(sent[1]) == sent[2]
                if sent[2] is not None
                else in_reset and sent[3] == self._calls
            )
            and np.array_equal(sent[0], ids)
        ):
            return sent[1]
        host = np.array(ids, np.int64)  # a copy: the caller's array may change
        tensor = device_async(host, self.device)
        self._sent = (host, tensor, _version(tensor), self._calls)
        return tensor

    def sent(self, ids: np.ndarray, tensor: Any) -> None:
        """Host ids ``ids`` are on the device as ``tensor`` (an int64 tensor of varirec's
        own, not changed later): :meth:`on_device` gives it back for them, in this call
        and after it."""
        self._calls += 1  # an id tensor an earlier call handed in is not this one
        self._sent = (np.array(ids), tensor, _version(tensor), self._calls)  # ids may change

    def host_float(self) -> type[np.floating] | None:
        """The numpy dtype that rounds floats as the env's float dtype does (float32 by
        default, float64), so a host cast gives its values; None for another torch
        dtype (half precision: torch casts it).

        >>> ArrayWorld().host_float().__name__
        'float32'
        """
        if self.dtype is None:  # the default: float32 (no torch dtype to compare)
            return np.float32
        torch = _torch()
        if self.dtype == torch.float32:
            return np.float32
        return np.float64 if self.dtype == torch.float64 else None

    def send(self, x: np.ndarray) -> Any:
        """Host array ``x`` as a tensor on the env's device, its dtype kept, without a
        wait for the device (:func:`device_async`)."""
        return device_async(np.ascontiguousarray(x), self.device)

    def values(self, values: np.ndarray | Any) -> Any:
        """Drawn values as the env takes them: numpy as they are; on a torch env a tensor
        on its device (floats in the world's dtype, default float32; strings stay numpy)."""
        if self.device is None:
            return values
        torch = _torch()
        if not is_tensor(values) and values.dtype.kind not in "USO" and off_host(self.device):
            # Cast on the host (the same rounding) and sent without a wait: one copy.
            cast = self.host_float()
            if values.dtype.kind == "f" and cast is not None:
                return device_async(values, self.device, cast)
            if values.dtype.kind != "f":
                return self.send(values)
        if is_tensor(values):
            t = values
        elif values.dtype.kind in "USO":
            return values
        else:
            t = torch.from_numpy(np.ascontiguousarray(values))
        if t.dtype.is_floating_point:
            t = t.to(self.dtype or torch.float32)
        return t.to(self.device, non_blocking=True)


def _version(t: Any) -> int | None:
    """How often tensor ``t`` was changed in place; None for an inference tensor (torch
    keeps no count of those)."""
    return None if t.is_inference() else t._version


def _torch() -> Any:
    import torch

    return torch
