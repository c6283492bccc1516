"""``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy.

Messages are duck-typed so the same code serves rclpy messages (``data`` is an ``array.array('B')``)
and rosbags typestore messages (``data`` is a numpy uint8 array). Only ``height, width, encoding,
is_bigendian, step, data`` (Image) and ``format, data`` (CompressedImage) are read.

Decoding returns a zero-copy view into ``msg.data`` whenever the bytes can be reinterpreted in
place (row padding included: rows are strided by ``step``); it copies only to swap byte order.
A view is read-only when ``msg.data`` is immutable (``bytes``). Every bad message or array raises
:class:`ImageConversionError`, whose text names the problem.

Label images (class ids, instance ids) must be compressed as png: jpeg is lossy and would invent
ids at every edge. 16-bit arrays are refused by jpeg outright.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import cv2
import numpy as np

# Named encodings -> (dtype, channels, colour order). The order drives image_to_rgb; None means the
# channels carry no colour meaning (generic OpenCV-style encodings: depth, labels, ...).
_NAMED: dict[str, tuple[str, int, str | None]] = {
    "rgb8": ("uint8", 3, "rgb"),
    "bgr8": ("uint8", 3, "bgr"),
    "rgba8": ("uint8", 4, "rgba"),
    "bgra8": ("uint8", 4, "bgra"),
    "rgb16": ("uint16", 3, "rgb"),
    "bgr16": ("uint16", 3, "bgr"),
    "rgba16": ("uint16", 4, "rgba"),
    "bgra16": ("uint16", 4, "bgra"),
    "mono8": ("uint8", 1, "mono"),
    "mono16": ("uint16", 1, "mono"),
    # 4:2:2 packed: two bytes per pixel, chroma shared by pixel pairs. ROS's "yuv422" is UYVY.
    "yuv422": ("uint8", 2, "uyvy"),
    "uyvy": ("uint8", 2, "uyvy"),
    "yuv422_yuy2": ("uint8", 2, "yuyv"),
    "yuyv": ("uint8", 2, "yuyv"),
}
_GENERIC_DEPTHS = {
    "8U": "uint8",
    "8S": "int8",
    "16U": "uint16",
    "16S": "int16",
    "32S": "int32",
    "32F": "float32",
    "64F": "float64",
}
_GENERIC_RE = re.compile(r"(8U|8S|16U|16S|32S|32F|64F)C([1-4])")
SUPPORTED_ENCODINGS = (*_NAMED, "{8U,8S,16U,16S,32S,32F,64F}C{1,2,3,4}")

_COMPRESSION_CODECS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}


class ImageConversionError(ValueError):
    """A message or array that cannot be converted; the text says why."""


class ImageTooLargeError(ImageConversionError):
    """An image with more pixels than the caller allows, refused before it is decoded."""


def _check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(f"{what} of {width}x{height} px has {width * height} pixels, more than the "
                                 f"{max_pixels} allowed (max_image_pixels)")


class ImageFields(NamedTuple):
    """The fields of a ``sensor_msgs/Image`` except ``header``."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


class CompressedFields(NamedTuple):
    """The fields of a ``sensor_msgs/CompressedImage`` except ``header``."""

    format: str
    data: bytes


def encoding_layout(encoding: str) -> tuple[np.dtype, int]:
    """(dtype, channels) of one pixel in ``encoding``; ImageConversionError if unknown."""
    dtype, channels, _ = _layout(encoding)
    return dtype, channels


def _layout(encoding: str) -> tuple[np.dtype, int, str | None]:
    if encoding in _NAMED:
        dtype, channels, order = _NAMED[encoding]
        return np.dtype(dtype), channels, order
    if match := _GENERIC_RE.fullmatch(encoding):
        return np.dtype(_GENERIC_DEPTHS[match[1]]), int(match[2]), None
    raise ImageConversionError(f"unknown encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")


@contextmanager
def _guard(what: str) -> Iterator[None]:
    """Turn anything unexpected (cv2.error, numpy errors, missing fields) into ImageConversionError."""
    try:
        yield
    except ImageConversionError:
        raise
    except Exception as exc:  # a bad message must never escape as anything else
        raise ImageConversionError(f"cannot convert {what}: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# Image -> numpy


def image_to_numpy(msg: Any) -> np.ndarray:
    """Pixels of a ``sensor_msgs/Image`` in the encoding's own layout.

    HxW for one channel, HxWxC otherwise (yuv422 encodings: HxWx2 uint8), dtype from the encoding.
    A zero-copy view into ``msg.data`` unless the data is big-endian on a little-endian host
    (or vice versa), where a native-order copy is returned.
    """
    with _guard("Image"):
        return _image_to_numpy(msg)


def _image_to_numpy(msg: Any) -> np.ndarray:
    encoding = str(msg.encoding)
    dtype, channels, _ = _layout(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"zero-size image {width}x{height} (width x height)")
    bytes_per_pixel = dtype.itemsize * channels
    if step < width * bytes_per_pixel:
        raise ImageConversionError(
            f"step {step} < width*bytes_per_pixel = {width * bytes_per_pixel} for encoding {encoding}"
        )
    buf = np.frombuffer(msg.data, dtype=np.uint8)  # zero-copy for bytes, array.array and ndarrays
    need = step * height
    if buf.size < need:
        raise ImageConversionError(
            f"data has {buf.size} bytes, need step*height = {need} (step {step} x height {height})"
        )
    # Rows are strided by step, so padding is skipped without a copy; multi-byte values are read in
    # the message's byte order and swapped to native below.
    order = ">" if msg.is_bigendian else "<"
    view = np.ndarray(
        shape=(height, width, channels),
        dtype=dtype.newbyteorder(order),
        buffer=buf,
        strides=(step, bytes_per_pixel, dtype.itemsize),
    )
    if not view.dtype.isnative:
        view = view.astype(dtype.newbyteorder("="))
    return view[:, :, 0] if channels == 1 else view


def image_to_rgb(msg: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """A ``sensor_msgs/Image`` as a contiguous HxWx3 uint8 RGB array, as a model consumes it.

    Colour, mono and yuv422 encodings are converted; 16-bit images keep their high byte. Generic
    encodings carry no colour meaning and are refused (e.g. 32FC1 depth, 16UC1), except 8UC3
    which, like cv_bridge and rosbags-image, is taken as-is. May share memory with ``msg.data``
    when the message already is contiguous rgb8. ``max_pixels`` refuses larger images before conversion.
    """
    with _guard("Image"):
        _check_pixels(int(msg.width), int(msg.height), max_pixels, "Image")
        return _to_rgb(_image_to_numpy(msg), str(msg.encoding))


def _to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    _, channels, order = _layout(encoding)
    if order is None:
        if channels == 3 and pixels.dtype == np.uint8:
            return np.ascontiguousarray(pixels)
        raise ImageConversionError(
            f"encoding {encoding!r} has no colour meaning (depth or label data?); "
            "cannot convert it to an RGB image"
        )
    if order in ("uyvy", "yuyv"):
        if pixels.shape[1] % 2:
            raise ImageConversionError(f"{encoding} needs an even width, got {pixels.shape[1]}")
        code = cv2.COLOR_YUV2RGB_UYVY if order == "uyvy" else cv2.COLOR_YUV2RGB_YUY2
        return cv2.cvtColor(np.ascontiguousarray(pixels), code)
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if order == "rgb":
        return np.ascontiguousarray(pixels)
    code = {
        "bgr": cv2.COLOR_BGR2RGB,
        "rgba": cv2.COLOR_RGBA2RGB,
        "bgra": cv2.COLOR_BGRA2RGB,
        "mono": cv2.COLOR_GRAY2RGB,
    }[order]
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


# --------------------------------------------------------------------------------------------------
# CompressedImage -> numpy


def compressed_to_numpy(msg: Any) -> np.ndarray:
    """Decode a jpeg/png ``sensor_msgs/CompressedImage``.

    With a compressed_image_transport format (``"rgb8; jpeg compressed bgr8"``) the array has the
    layout of the encoding before ';' (rgb8 -> RGB order, rgba8 -> RGBA with opaque alpha when the
    codec dropped it, mono16 -> HxW uint16). With a bare ``"jpeg"``/``"png"`` it is what the codec
    holds, in OpenCV order: HxW grey, HxWx3 BGR or HxWx4 BGRA, uint8 or uint16.
    """
    with _guard("CompressedImage"):
        return _decode_compressed(msg)[0]


def compressed_to_rgb(msg: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` as a contiguous HxWx3 uint8 RGB array.

    With ``max_pixels``, the size is read from the jpeg/png header first and a larger image is refused
    undecoded (a small file can hold a huge image); a stream without such a header is refused too.
    """
    with _guard("CompressedImage"):
        if max_pixels is not None:
            width, height = compressed_size(msg)
            _check_pixels(width, height, max_pixels, "CompressedImage")
        return _to_rgb(*_decode_compressed(msg))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (they carry the size); C4, C8 and CC are other segments in that range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_size(msg: Any) -> tuple[int, int]:
    """(width, height) of a png/jpeg ``CompressedImage`` read from its header, without decoding it."""
    with _guard("CompressedImage"):
        codec, _, _ = _parse_format(str(msg.format))
        data = bytes(memoryview(np.frombuffer(msg.data, dtype=np.uint8))[:1 << 20])  # headers sit at the front
        size = _png_size(data) if codec == "png" else _jpeg_size(data)
        if size is None:
            raise ImageConversionError(f"CompressedImage ({len(data)} bytes) has no {codec} header with a size")
        return size


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if marker in _JPEG_SOF:
            if position + 9 > len(data):
                return None
            height = int.from_bytes(data[position + 5:position + 7], "big")
            width = int.from_bytes(data[position + 7:position + 9], "big")
            return width, height
        if length < 2:
            return None
        position += 2 + length
    return None


def _parse_format(fmt: str) -> tuple[str, str | None, bool]:
    """(codec, original encoding or None, decoded channels are in BGR order)."""
    original, sep, rest = (part.strip() for part in fmt.partition(";"))
    if not sep:  # bare "jpeg"/"png": an OpenCV-encoded BGR image
        original, rest = "", original
    words = rest.lower().split()
    if "compresseddepth" in words:
        raise ImageConversionError(f"compressedDepth format {fmt!r} is not supported")
    codec = _COMPRESSION_CODECS.get(words[0]) if words else None
    if codec is None:
        raise ImageConversionError(f"unknown compression format {fmt!r}; supported: jpeg, png")
    # As in compressed_image_transport's subscriber: a colour image was compressed in BGR order
    # when the format says "compressed bgr...", otherwise in its own (RGB) order.
    bgr = not sep or "compressed bgr" in rest.lower()
    return codec, original or None, bgr


def _decode_compressed(msg: Any) -> tuple[np.ndarray, str]:
    """Decoded pixels and the encoding describing their layout."""
    fmt = str(msg.format)
    codec, original, bgr = _parse_format(fmt)
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageConversionError(f"empty CompressedImage (0 bytes, format {fmt!r})")
    # IMREAD_UNCHANGED keeps 16 bits and alpha, as compressed_image_transport decodes.
    pixels = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise ImageConversionError(f"cannot decode {codec} CompressedImage ({buf.size} bytes)")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if original is None:
        depth = "16" if pixels.dtype == np.uint16 else "8"
        if pixels.dtype not in (np.uint8, np.uint16) or channels not in (1, 3, 4):
            raise ImageConversionError(
                f"decoded {codec} is {pixels.dtype} with {channels} channel(s); expected uint8/uint16 "
                "with 1, 3 or 4 channels"
            )
        return pixels, {1: "mono", 3: "bgr", 4: "bgra"}[channels] + depth
    dtype, want_channels, order = _layout(original)
    if order in ("rgb", "bgr", "rgba", "bgra") and channels in (3, 4):
        src = "bgr" if bgr else "rgb"
        if channels == 4:
            src += "a"
        if src != order:
            pixels = cv2.cvtColor(pixels, getattr(cv2, f"COLOR_{src.upper()}2{order.upper()}"))
        channels = pixels.shape[2]
    if pixels.dtype != dtype or channels != want_channels:
        raise ImageConversionError(
            f"decoded {codec} is {pixels.dtype} with {channels} channel(s), but format {fmt!r} "
            f"promises {original} ({dtype} with {want_channels} channel(s))"
        )
    return (pixels[:, :, 0] if pixels.ndim == 3 and want_channels == 1 else pixels), original


# --------------------------------------------------------------------------------------------------
# numpy -> messages


def _check_array(array: np.ndarray, encoding: str) -> np.ndarray:
    """``array`` validated against ``encoding``, as an HxWxC native-order array."""
    dtype, channels, _ = _layout(encoding)
    array = np.asarray(array)
    if array.ndim == 2 and channels == 1:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != channels:
        want = "HxW or HxWx1" if channels == 1 else f"HxWx{channels}"
        raise ImageConversionError(
            f"array of shape {array.shape} does not fit encoding {encoding} ({want} {dtype})"
        )
    if array.dtype.newbyteorder("=") != dtype:
        raise ImageConversionError(f"array dtype {array.dtype} does not fit encoding {encoding} ({dtype})")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageConversionError(f"zero-size image {array.shape[1]}x{array.shape[0]} (width x height)")
    return array.astype(dtype, copy=False)  # native byte order


def numpy_to_image_fields(array: np.ndarray, encoding: str) -> ImageFields:
    """Image fields for ``array`` laid out as ``encoding`` (HxW or HxWxC, matching dtype)."""
    with _guard(f"array to {encoding} Image"):
        pixels = _check_array(array, encoding)
    height, width, channels = pixels.shape
    return ImageFields(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(sys.byteorder == "big"),
        step=width * channels * pixels.dtype.itemsize,
        data=np.ascontiguousarray(pixels).tobytes(),
    )


def _message_data(msg_class: type, data: bytes) -> Any:
    # rosbags typestore messages are dataclasses holding uint8 arrays; rclpy takes bytes.
    if msg_class.__module__.startswith("rosbags") or dataclasses.is_dataclass(msg_class):
        return np.frombuffer(data, dtype=np.uint8)
    return data


def to_image_msg(array: np.ndarray, encoding: str, header: Any, msg_class: type) -> Any:
    """A ``msg_class`` (rclpy or rosbags ``sensor_msgs/Image``) holding a copy of ``array``."""
    f = numpy_to_image_fields(array, encoding)
    return msg_class(
        header=header,
        height=f.height,
        width=f.width,
        encoding=f.encoding,
        is_bigendian=f.is_bigendian,
        step=f.step,
        data=_message_data(msg_class, f.data),
    )


def numpy_to_compressed_fields(
    array: np.ndarray,
    fmt: str = "jpeg",
    *,
    encoding: str = "rgb8",
    jpeg_quality: int = 90,
) -> CompressedFields:
    """Compress ``array`` (laid out as ``encoding``) as compressed_image_transport does.

    Colour images are stored in BGR order and tagged ``"<encoding>; <fmt> compressed bgr8"``
    (alpha is dropped); others keep their channels: ``"mono16; png compressed mono16"``.
    Use png for label images; jpeg refuses 16-bit data.
    """
    with _guard(f"{encoding} array to {fmt}"):
        return _compress(array, fmt, encoding, jpeg_quality)


def _compress(array: np.ndarray, fmt: str, encoding: str, jpeg_quality: int) -> CompressedFields:
    codec = _COMPRESSION_CODECS.get(fmt.lower())
    if codec is None:
        raise ImageConversionError(f"unknown compression format {fmt!r}; supported: jpeg, png")
    pixels = _check_array(array, encoding)
    _, channels, order = _layout(encoding)
    if order in ("uyvy", "yuyv"):
        raise ImageConversionError(f"cannot compress {encoding}; convert it to rgb8 first")
    if pixels.dtype not in (np.uint8, np.uint16) or channels == 2:
        raise ImageConversionError(f"cannot compress {encoding} ({pixels.dtype} x{channels}) as {codec}")
    if codec == "jpeg" and pixels.dtype == np.uint16:
        raise ImageConversionError(f"jpeg is 8-bit and lossy; 16-bit {encoding} must use png")
    target = encoding
    if order in ("rgb", "bgr", "rgba", "bgra"):
        target = "bgr16" if pixels.dtype == np.uint16 else "bgr8"
        if order != "bgr":
            pixels = cv2.cvtColor(pixels, getattr(cv2, f"COLOR_{order.upper()}2BGR"))
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if codec == "jpeg" else []
    ok, encoded = cv2.imencode(f".{codec}", np.ascontiguousarray(pixels), params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode {encoding} {pixels.shape} as {codec}")
    return CompressedFields(format=f"{encoding}; {codec} compressed {target}", data=encoded.tobytes())


def to_compressed_msg(
    array: np.ndarray,
    header: Any,
    msg_class: type,
    fmt: str = "jpeg",
    *,
    encoding: str = "rgb8",
    jpeg_quality: int = 90,
) -> Any:
    """A ``msg_class`` (rclpy or rosbags ``sensor_msgs/CompressedImage``) holding ``array`` compressed."""
    fields = numpy_to_compressed_fields(array, fmt, encoding=encoding, jpeg_quality=jpeg_quality)
    return msg_class(header=header, format=fields.format, data=_message_data(msg_class, fields.data))
