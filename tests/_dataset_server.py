"""A throwaway HTTP server on 127.0.0.1 and tiny archives in each benchmark's official format.

The server (standard library only) serves bytes from a dict, honours ``Range`` requests, logs
every request, can be told to break off a transfer half-way, and shuts itself down after
``lifetime`` seconds even if a test forgets to. The archives hold a few images each, laid out
exactly as the official files are, so the loaders' decoding is tested without the internet.
"""

import gzip
import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


class DatasetServer:
    """Serve ``files`` (``{"/cifar10/cifar-10-binary.tar.gz": bytes}``) on 127.0.0.1."""

    def __init__(self, files, lifetime=60.0):
        self.files = dict(files)
        self.requests = []  # (path, Range header or None)
        self.truncate = set()  # paths whose next transfer breaks off half-way
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data) and rng:
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.truncate:
                    server.truncate.discard(self.path)
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    def __enter__(self):
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, fragment):
        return sum(fragment in path for path, _ in self.requests)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _gzip(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as fh:
        fh.write(data)
    return buf.getvalue()


def _idx(array, magic):
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return _gzip(header + array.astype(np.uint8).tobytes())


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _images(rng, n, shape):
    return rng.integers(0, 256, (n,) + shape, dtype=np.uint8)


def make_idx(n_train=5, n_test=3, seed=0):
    """MNIST / Fashion-MNIST: four gzip-compressed IDX files; returns (files, expected arrays)."""
    rng = np.random.default_rng(seed)
    arrays = {"X_train": _images(rng, n_train, (28, 28)), "y_train": np.arange(n_train) % 10,
              "X_test": _images(rng, n_test, (28, 28)), "y_test": (np.arange(n_test) + 7) % 10}
    files = {"train-images-idx3-ubyte.gz": _idx(arrays["X_train"], 2051),
             "train-labels-idx1-ubyte.gz": _idx(arrays["y_train"], 2049),
             "t10k-images-idx3-ubyte.gz": _idx(arrays["X_test"], 2051),
             "t10k-labels-idx1-ubyte.gz": _idx(arrays["y_test"], 2049)}
    return files, arrays


def _cifar_bin(images, *labels):
    chw = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([np.stack(labels, 1).astype(np.uint8), chw], axis=1).tobytes()


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def make_cifar10(per_batch=2, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    root = "cifar-10-batches-bin/"
    members, X, y = {}, [], []
    for i in range(1, 6):
        images = _images(rng, per_batch, (32, 32, 3))
        labels = (np.arange(per_batch) + 2 * i) % 10
        members[f"{root}data_batch_{i}.bin"] = _cifar_bin(images, labels)
        X.append(images)
        y.append(labels)
    X_test, y_test = _images(rng, n_test, (32, 32, 3)), np.arange(n_test) % 10
    members[f"{root}test_batch.bin"] = _cifar_bin(X_test, y_test)
    members[f"{root}batches.meta.txt"] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()
    arrays = {"X_train": np.concatenate(X), "y_train": np.concatenate(y), "X_test": X_test,
              "y_test": y_test}
    return {"cifar-10-binary.tar.gz": _tar(members)}, arrays


def make_cifar100(n_train=100, n_test=4, seed=0):
    """One image per fine class by default, so that ``ipc=1`` works on it."""
    rng = np.random.default_rng(seed)
    fine_train = np.arange(n_train) % 100
    fine_test = (np.arange(n_test) * 7) % 100
    X_train, X_test = _images(rng, n_train, (32, 32, 3)), _images(rng, n_test, (32, 32, 3))
    root = "cifar-100-binary/"
    members = {
        f"{root}train.bin": _cifar_bin(X_train, fine_train % 20, fine_train),
        f"{root}test.bin": _cifar_bin(X_test, fine_test % 20, fine_test),
        f"{root}fine_label_names.txt": "\n".join(f"fine{i}" for i in range(100)).encode(),
        f"{root}coarse_label_names.txt": "\n".join(f"coarse{i}" for i in range(20)).encode(),
    }
    arrays = {"X_train": X_train, "y_train": fine_train, "X_test": X_test, "y_test": fine_test,
              "y_train_coarse": fine_train % 20, "y_test_coarse": fine_test % 20}
    return {"cifar-100-binary.tar.gz": _tar(members)}, arrays


def _mat(images, labels):
    from scipy.io import savemat

    buf = io.BytesIO()
    # SVHN stores X as 32 x 32 x 3 x n and the digit 0 as label 10.
    savemat(buf, {"X": images.transpose(1, 2, 3, 0),
                  "y": np.where(labels == 0, 10, labels).astype(np.uint8)[:, None]})
    return buf.getvalue()


def make_svhn(n_train=4, n_test=3, n_extra=2, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"X_train": _images(rng, n_train, (32, 32, 3)), "y_train": np.arange(n_train) % 10,
              "X_test": _images(rng, n_test, (32, 32, 3)), "y_test": (np.arange(n_test) + 8) % 10,
              "X_extra": _images(rng, n_extra, (32, 32, 3)), "y_extra": np.arange(n_extra)}
    files = {f"{split}_32x32.mat": _mat(arrays[f"X_{split}"], arrays[f"y_{split}"])
             for split in ("train", "test", "extra")}
    return files, arrays


TINY_WNIDS = ["n09999999", "n01443537", "n02124075"]  # deliberately not in sorted order


def _jpeg(colour, mode="RGB"):
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (64, 64), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_tiny_imagenet(per_class=2):
    """The zip's layout: wnids.txt, words.txt, train/<wnid>/images, val/images + annotations."""
    root = "tiny-imagenet-200/"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(root + "wnids.txt", "\n".join(TINY_WNIDS) + "\n")
        archive.writestr(root + "words.txt", "n01443537\tgoldfish, Carassius auratus\n"
                                             "n02124075\tEgyptian cat\nn09999999\tthing\n"
                                             "n00000001\tunused class\n")
        for wnid in TINY_WNIDS:
            archive.writestr(f"{root}train/{wnid}/{wnid}_boxes.txt", "")
            for i in range(per_class):
                # One greyscale JPEG, as in the real set, must come back with three channels.
                data = _jpeg(40 * i, "L") if i == 1 else _jpeg((200, 10 * i, 0))
                archive.writestr(f"{root}train/{wnid}/images/{wnid}_{i}.JPEG", data)
        lines = []
        for i, wnid in enumerate(["n02124075", "n09999999"]):
            archive.writestr(f"{root}val/images/val_{i}.JPEG", _jpeg((0, 0, 250)))
            lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
        archive.writestr(root + "val/val_annotations.txt", "\n".join(lines) + "\n")
        archive.writestr(root + "test/images/test_0.JPEG", _jpeg((1, 2, 3)))
    return {"tiny-imagenet-200.zip": buf.getvalue()}
