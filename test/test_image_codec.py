"""Tests for seg_perception.ros_io.image_codec, cross-checked against rosbags-image."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from rosbags.image import compressed_image_to_cvimage, image_to_cvimage
from rosbags.typesys import Stores, get_typestore

from seg_perception.ros_io.image_codec import (
    ImageConversionError,
    ImageTooLargeError,
    compressed_size,
    compressed_to_numpy,
    compressed_to_rgb,
    encoding_layout,
    image_to_numpy,
    image_to_rgb,
    numpy_to_compressed_fields,
    numpy_to_image_fields,
    to_compressed_msg,
    to_image_msg,
)

LISTED = [
    "rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "16UC1", "32FC1",
    "yuv422", "uyvy", "yuv422_yuy2", "yuyv",
]  # fmt: skip
EXTRA = ["rgb16", "bgra16", "8SC2", "16SC4", "32SC1", "64FC3", "32FC4"]
COLOUR = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "rgb16", "bgra16", "8UC3"]
YUV = ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"]

TS = get_typestore(Stores.ROS2_KILTED)
RbImage = TS.types["sensor_msgs/msg/Image"]
RbCompressed = TS.types["sensor_msgs/msg/CompressedImage"]
RB_HEADER = TS.types["std_msgs/msg/Header"](
    stamp=TS.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="camera"
)


@dataclasses.dataclass
class FakeImage:
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: object


@dataclasses.dataclass
class FakeCompressed:
    format: str
    data: object


def random_pixels(encoding: str, height: int = 6, width: int = 8, seed: int = 0) -> np.ndarray:
    dtype, channels = encoding_layout(encoding)
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def padded_message(pixels: np.ndarray, encoding: str, pad: int, *, bigendian: bool = False) -> FakeImage:
    """A message whose rows carry ``pad`` garbage bytes, data as a numpy buffer (as rosbags gives)."""
    height, width = pixels.shape[:2]
    order = ">" if bigendian else "<"
    rows = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder(order))).view(np.uint8)
    rows = rows.reshape(height, -1)
    garbage = np.random.default_rng(1).integers(0, 256, (height, pad), dtype=np.uint8)
    data = np.concatenate([rows, garbage], axis=1).reshape(-1)
    return FakeImage(height, width, encoding, int(bigendian), rows.shape[1] + pad, data)


def reference_yuv422_to_rgb(yuv: np.ndarray, order: str) -> np.ndarray:
    """BT.601 limited-range YUV -> RGB in floating point, written from the formula (not via cv2)."""
    y = yuv[:, :, 1 if order == "uyvy" else 0].astype(np.float64)
    chroma = yuv[:, :, 0 if order == "uyvy" else 1].astype(np.float64)
    # chroma alternates U, V per pixel; each pair of pixels shares its U and V
    u = np.repeat(chroma[:, 0::2], 2, axis=1) - 128.0
    v = np.repeat(chroma[:, 1::2], 2, axis=1) - 128.0
    c = 1.164 * (y - 16.0)
    rgb = np.stack([c + 1.596 * v, c - 0.391 * u - 0.813 * v, c + 2.018 * u], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def jpeg_bytes(shape: tuple[int, ...] = (48, 64, 3)) -> bytes:
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = np.dstack([x * 4 % 256, y * 4 % 256, (x + y) % 256]).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", img)
    return buf.tobytes()


# ------------------------------------------------------------------------------------------------
# Image round trips, padding, byte order


@pytest.mark.parametrize("encoding", LISTED + EXTRA)
def test_round_trip(encoding):
    pixels = random_pixels(encoding)
    fields = numpy_to_image_fields(pixels, encoding)
    assert isinstance(fields.data, bytes)
    assert fields.step == pixels.shape[1] * pixels.itemsize * encoding_layout(encoding)[1]
    decoded = image_to_numpy(FakeImage(**fields._asdict()))
    assert decoded.dtype == pixels.dtype
    np.testing.assert_array_equal(decoded, pixels)


def test_hxwx1_array_is_accepted_for_one_channel_encodings():
    pixels = random_pixels("mono8")
    fields = numpy_to_image_fields(pixels[:, :, None], "mono8")
    np.testing.assert_array_equal(image_to_numpy(FakeImage(**fields._asdict())), pixels)


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "mono16", "16UC1", "32FC1", "yuyv", "rgba8", "64FC3"])
@pytest.mark.parametrize("pad", [1, 3, 16])
def test_step_padding_is_ignored_and_zero_copy(encoding, pad):
    pixels = random_pixels(encoding, height=5, width=7)
    msg = padded_message(pixels, encoding, pad)
    decoded = image_to_numpy(msg)
    np.testing.assert_array_equal(decoded, pixels)
    assert np.shares_memory(decoded, msg.data), "padded rows must still decode to a view"


def test_padding_with_bytes_data_and_extra_trailing_bytes():
    pixels = random_pixels("bgr8", height=4, width=5)
    msg = padded_message(pixels, "bgr8", 5)
    msg.data = msg.data.tobytes() + b"\xff" * 9  # more than step*height is tolerated
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)
    np.testing.assert_array_equal(image_to_rgb(msg), pixels[:, :, ::-1])


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1", "rgb16", "16SC4", "64FC3"])
def test_big_endian_data_decodes_to_native_values(encoding):
    pixels = random_pixels(encoding, seed=3)
    msg = padded_message(pixels, encoding, 2, bigendian=True)
    decoded = image_to_numpy(msg)
    assert decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, pixels)


def test_big_endian_values_are_read_big_endian():
    msg = FakeImage(1, 2, "mono16", 1, 4, bytes([0x01, 0x02, 0xFF, 0x00]))
    np.testing.assert_array_equal(image_to_numpy(msg), [[0x0102, 0xFF00]])
    msg.is_bigendian = 0
    np.testing.assert_array_equal(image_to_numpy(msg), [[0x0201, 0x00FF]])


def test_big_endian_input_array_is_stored_native():
    pixels = random_pixels("mono16")
    fields = numpy_to_image_fields(pixels.astype(">u2"), "mono16")
    np.testing.assert_array_equal(image_to_numpy(FakeImage(**fields._asdict())), pixels)


# ------------------------------------------------------------------------------------------------
# image_to_rgb


@pytest.mark.parametrize("encoding", COLOUR)
def test_to_rgb_of_colour_encodings(encoding):
    pixels = random_pixels(encoding)
    msg = FakeImage(**numpy_to_image_fields(pixels, encoding)._asdict())
    rgb = image_to_rgb(msg)
    assert rgb.dtype == np.uint8 and rgb.shape == (*pixels.shape[:2], 3) and rgb.flags.c_contiguous
    eight = (pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels
    expected = {
        "rgb": eight[..., :3],
        "bgr": eight[..., 2::-1],
        "mon": np.repeat(eight[..., None], 3, axis=2),
        "8UC": eight,
    }[encoding[:3]]
    np.testing.assert_array_equal(rgb, expected)


@pytest.mark.parametrize("encoding", YUV)
def test_yuv422_to_rgb_matches_independent_reference(encoding):
    order = "uyvy" if encoding in ("yuv422", "uyvy") else "yuyv"
    yuv = random_pixels(encoding, height=6, width=10, seed=5)
    # keep Y and chroma inside their nominal ranges so the reference need not model clipping quirks
    yuv = (16 + yuv.astype(np.uint16) * 219 // 255).astype(np.uint8)
    rgb = image_to_rgb(FakeImage(**numpy_to_image_fields(yuv, encoding)._asdict()))
    # OpenCV uses 20-bit fixed-point coefficients; the float reference may round the other way.
    np.testing.assert_allclose(rgb, reference_yuv422_to_rgb(yuv, order), atol=1)


@pytest.mark.parametrize("encoding", YUV)
def test_flat_grey_yuv_decodes_to_grey(encoding):
    yuv = np.full((4, 6, 2), 128, np.uint8)
    rgb = image_to_rgb(FakeImage(**numpy_to_image_fields(yuv, encoding)._asdict()))
    assert (rgb == rgb[0, 0, 0]).all()
    assert 125 <= rgb[0, 0, 0] <= 135  # limited range: 1.164 * (128 - 16) ~ 130


def test_uyvy_and_yuyv_are_byte_orders_of_the_same_pixels():
    yuyv = random_pixels("yuyv", seed=7)
    uyvy = yuyv[:, :, ::-1]  # per pixel (Y, chroma) -> (chroma, Y)
    a = image_to_rgb(FakeImage(**numpy_to_image_fields(yuyv, "yuyv")._asdict()))
    b = image_to_rgb(FakeImage(**numpy_to_image_fields(np.ascontiguousarray(uyvy), "uyvy")._asdict()))
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# Cross-check against rosbags-image on the same rosbags messages


@pytest.mark.parametrize("encoding", LISTED + EXTRA)
def test_raw_decode_matches_rosbags_image(encoding):
    pixels = random_pixels(encoding, seed=11)
    msg = to_image_msg(pixels, encoding, RB_HEADER, RbImage)
    assert isinstance(msg.data, np.ndarray) and msg.data.dtype == np.uint8
    ours = image_to_numpy(msg)
    theirs = image_to_cvimage(msg)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)
    assert np.shares_memory(ours, msg.data)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1", "64FC3"])
def test_big_endian_decode_matches_rosbags_image(encoding):
    pixels = random_pixels(encoding, seed=12)
    unpadded = padded_message(pixels, encoding, 0, bigendian=True)
    msg = RbImage(RB_HEADER, **{f.name: getattr(unpadded, f.name) for f in dataclasses.fields(unpadded)})
    np.testing.assert_array_equal(image_to_numpy(msg), image_to_cvimage(msg))


@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "uyvy", "32FC1"])
def test_padded_decode_matches_rosbags_on_unpadded_bytes(encoding):
    # rosbags-image ignores step, so compare our padded decode with its unpadded one.
    pixels = random_pixels(encoding, seed=13)
    padded = padded_message(pixels, encoding, 6)
    rb = to_image_msg(pixels, encoding, RB_HEADER, RbImage)
    np.testing.assert_array_equal(image_to_numpy(padded), image_to_cvimage(rb))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC3", *YUV])
def test_rgb_matches_rosbags_image_exactly(encoding):
    msg = to_image_msg(random_pixels(encoding, seed=21), encoding, RB_HEADER, RbImage)
    np.testing.assert_array_equal(image_to_rgb(msg), image_to_cvimage(msg, "rgb8"))


@pytest.mark.parametrize("encoding", ["mono16", "rgb16", "bgra16"])
def test_16bit_rgb_is_high_byte_and_within_one_of_rosbags_image(encoding):
    pixels = random_pixels(encoding, seed=22)
    msg = to_image_msg(pixels, encoding, RB_HEADER, RbImage)
    ours = image_to_rgb(msg).astype(int)
    # rosbags-image maps x -> floor(x * 255 / 65535), we keep the high byte x >> 8: both are fair
    # 16 -> 8 bit mappings and differ by at most one.
    theirs = image_to_cvimage(msg, "rgb8").astype(int)
    assert np.abs(ours - theirs).max() <= 1
    red = pixels if pixels.ndim == 2 else pixels[..., 0 if encoding.startswith("rgb") else 2]
    np.testing.assert_array_equal(ours[..., 0], red >> 8)


@pytest.mark.parametrize("encoding", ["8UC1", "16UC1", "32FC1"])
def test_non_colour_encodings_are_refused_like_rosbags_image(encoding):
    msg = to_image_msg(random_pixels(encoding), encoding, RB_HEADER, RbImage)
    with pytest.raises(ImageConversionError, match=f"'{encoding}' has no colour meaning"):
        image_to_rgb(msg)
    with pytest.raises(Exception, match="not supported"):
        image_to_cvimage(msg, "rgb8")


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "mono8"])
def test_compressed_matches_rosbags_image(fmt, encoding):
    pixels = random_pixels(encoding, height=24, width=32, seed=31)
    msg = to_compressed_msg(pixels, RB_HEADER, RbCompressed, fmt, encoding=encoding)
    ours = compressed_to_numpy(msg)
    theirs = compressed_image_to_cvimage(msg)  # always OpenCV's BGR order, whatever the format says
    np.testing.assert_array_equal(ours, theirs[..., ::-1] if encoding == "rgb8" else theirs)
    np.testing.assert_array_equal(compressed_to_rgb(msg), compressed_image_to_cvimage(msg, "rgb8"))
    if fmt == "png":
        np.testing.assert_array_equal(ours, pixels)


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "png"])
def test_bare_format_matches_rosbags_image(fmt):
    bgr = random_pixels("bgr8", height=16, width=16, seed=32)
    _, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", bgr)
    msg = RbCompressed(RB_HEADER, fmt, buf.reshape(-1))
    np.testing.assert_array_equal(compressed_to_numpy(msg), compressed_image_to_cvimage(msg))
    np.testing.assert_array_equal(compressed_to_rgb(msg), compressed_image_to_cvimage(msg, "rgb8"))


# ------------------------------------------------------------------------------------------------
# CompressedImage specifics


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "mono16", "16UC1", "8UC1", "8UC3", "rgb16"])
def test_png_round_trip_is_lossless(encoding):
    pixels = random_pixels(encoding, seed=41)
    fields = numpy_to_compressed_fields(pixels, "png", encoding=encoding)
    decoded = compressed_to_numpy(FakeCompressed(*fields))
    assert decoded.dtype == pixels.dtype
    np.testing.assert_array_equal(decoded, pixels)


def test_formats_follow_compressed_image_transport():
    rgb = random_pixels("rgb8")
    assert numpy_to_compressed_fields(rgb).format == "rgb8; jpeg compressed bgr8"
    assert numpy_to_compressed_fields(rgb, "png", encoding="rgb8").format == "rgb8; png compressed bgr8"
    mono16 = random_pixels("mono16")
    assert numpy_to_compressed_fields(mono16, "png", encoding="mono16").format == (
        "mono16; png compressed mono16"
    )


def test_png_rgba_drops_alpha_and_decodes_opaque():
    rgba = random_pixels("rgba8", seed=42)
    decoded = compressed_to_numpy(FakeCompressed(*numpy_to_compressed_fields(rgba, "png", encoding="rgba8")))
    np.testing.assert_array_equal(decoded[..., :3], rgba[..., :3])
    assert (decoded[..., 3] == 255).all()


def test_jpeg_keeps_channel_order():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 250  # pure red
    for encoding, image in (("rgb8", rgb), ("bgr8", rgb[..., ::-1])):
        msg = FakeCompressed(*numpy_to_compressed_fields(image, "jpeg", encoding=encoding, jpeg_quality=95))
        out = compressed_to_rgb(msg).astype(int)
        assert np.abs(out - rgb).max() <= 3
        assert np.abs(compressed_to_numpy(msg).astype(int) - image).max() <= 3


@pytest.mark.parametrize(
    ("fmt", "expected_shape", "expected_dtype"),
    [
        ("mono8; png compressed", (8, 10), np.uint8),
        ("16UC1; png compressed", (8, 10), np.uint16),
        ("mono16; png compressed mono16", (8, 10), np.uint16),
        ("bgr8; jpeg compressed bgr8", (8, 10, 3), np.uint8),
    ],
)
def test_formats_seen_in_the_wild(fmt, expected_shape, expected_dtype):
    image = np.full(expected_shape, 200, expected_dtype)
    _, buf = cv2.imencode(".png" if "png" in fmt else ".jpg", image)
    decoded = compressed_to_numpy(FakeCompressed(fmt, buf.tobytes()))
    assert decoded.shape == expected_shape and decoded.dtype == expected_dtype


def test_colour_compressed_in_own_order_is_not_swapped():
    # compressed_image_transport: without "compressed bgr" the codec holds the original channel order
    rgb = random_pixels("rgb8", seed=45)
    _, buf = cv2.imencode(".png", rgb)  # RGB bytes stored as they are
    msg = FakeCompressed("rgb8; png compressed rgb8", buf.tobytes())
    np.testing.assert_array_equal(compressed_to_numpy(msg), rgb)
    np.testing.assert_array_equal(compressed_to_rgb(msg), rgb)
    msg.format = "bgr8; png compressed rgb8"
    np.testing.assert_array_equal(compressed_to_numpy(msg), rgb[..., ::-1])


def test_rgb_from_bare_rgba_png_and_16bit_png():
    bgra = random_pixels("bgra8", seed=43)
    _, buf = cv2.imencode(".png", bgra)
    np.testing.assert_array_equal(compressed_to_rgb(FakeCompressed("png", buf)), bgra[..., 2::-1])
    mono16 = random_pixels("mono16", seed=44)
    _, buf = cv2.imencode(".png", mono16)
    assert compressed_to_numpy(FakeCompressed("png", buf)).dtype == np.uint16
    np.testing.assert_array_equal(
        compressed_to_rgb(FakeCompressed("png", buf))[..., 1], (mono16 >> 8).astype(np.uint8)
    )


# ------------------------------------------------------------------------------------------------
# rclpy messages


def test_rclpy_messages_round_trip():
    # rclpy message classes import without rclpy.init(); a failure here is a broken venv, not a skip.
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

    for encoding in ("rgb8", "mono16", "32FC1", "yuv422"):
        pixels = random_pixels(encoding, seed=51)
        msg = to_image_msg(pixels, encoding, Header(frame_id="cam"), Image)
        assert msg.header.frame_id == "cam" and msg.step == numpy_to_image_fields(pixels, encoding).step
        decoded = image_to_numpy(msg)
        np.testing.assert_array_equal(decoded, pixels)
        assert np.shares_memory(decoded, np.frombuffer(msg.data, np.uint8))  # view into array.array
    rgb = random_pixels("rgb8", seed=52)
    msg = to_compressed_msg(rgb, Header(), CompressedImage, "png", encoding="rgb8")
    assert msg.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(compressed_to_rgb(msg), rgb)


# ------------------------------------------------------------------------------------------------
# Bad messages and arrays


def _rgb_msg(**changes) -> FakeImage:
    msg = FakeImage(height=3, width=40, encoding="rgb8", is_bigendian=0, step=1024, data=bytes(3072))
    return dataclasses.replace(msg, **changes)


BAD_IMAGES = [
    (image_to_numpy, _rgb_msg(encoding="rgb16x"), r"unknown encoding 'rgb16x'; supported: rgb8"),
    (image_to_numpy, _rgb_msg(encoding=""), r"unknown encoding ''"),
    (
        image_to_numpy,
        _rgb_msg(data=bytes(1000)),
        r"data has 1000 bytes, need step\*height = 3072 \(step 1024",
    ),
    (image_to_numpy, _rgb_msg(step=100), r"step 100 < width\*bytes_per_pixel = 120 for encoding rgb8"),
    (image_to_numpy, _rgb_msg(width=0, height=480), r"zero-size image 0x480"),
    (image_to_numpy, _rgb_msg(height=0), r"zero-size image 40x0"),
    (image_to_numpy, _rgb_msg(encoding="mono16", step=79), r"step 79 < width\*bytes_per_pixel = 80"),
    (image_to_numpy, _rgb_msg(data=None), r"cannot convert Image: TypeError"),
    (image_to_numpy, FakeCompressed("jpeg", b"x"), r"cannot convert Image: AttributeError"),
    (image_to_rgb, _rgb_msg(encoding="32FC1", step=160), r"encoding '32FC1' has no colour meaning"),
    (image_to_rgb, _rgb_msg(encoding="yuv422", width=5, step=10), r"yuv422 needs an even width, got 5"),
]


@pytest.mark.parametrize(("func", "msg", "phrase"), BAD_IMAGES)
def test_bad_image_messages_raise_one_clear_error(func, msg, phrase):
    with pytest.raises(ImageConversionError, match=phrase):
        func(msg)


def _mono8_png() -> bytes:
    return cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()


BAD_COMPRESSED = [
    (
        FakeCompressed("jpeg", np.random.default_rng(0).bytes(2048)),
        r"cannot decode jpeg CompressedImage \(2048",
    ),
    (FakeCompressed("jpeg", jpeg_bytes()[: len(jpeg_bytes()) // 2]), r"cannot decode jpeg CompressedImage"),
    (FakeCompressed("rgb8; jpeg compressed bgr8", jpeg_bytes()[:-10]), r"cannot decode jpeg"),
    (FakeCompressed("jpeg", b""), r"empty CompressedImage \(0 bytes"),
    (FakeCompressed("png", np.zeros(0, np.uint8)), r"empty CompressedImage"),
    (FakeCompressed("webp", jpeg_bytes()), r"unknown compression format 'webp'"),
    (FakeCompressed("", jpeg_bytes()), r"unknown compression format ''"),
    (FakeCompressed("rgb8", jpeg_bytes()), r"unknown compression format 'rgb8'"),
    (FakeCompressed("16UC1; compressedDepth png", _mono8_png()), r"compressedDepth format"),
    (FakeCompressed("rgb16x; png compressed bgr8", _mono8_png()), r"unknown encoding 'rgb16x'"),
    (FakeCompressed("mono16; png compressed mono16", _mono8_png()), r"promises mono16"),
    (FakeCompressed("rgb8; png compressed bgr8", _mono8_png()), r"uint8 with 1 channel\(s\), but format"),
    (FakeCompressed("png", None), r"cannot convert CompressedImage: TypeError"),
]


@pytest.mark.parametrize(("msg", "phrase"), BAD_COMPRESSED)
@pytest.mark.parametrize("func", [compressed_to_numpy, compressed_to_rgb])
def test_bad_compressed_messages_raise_one_clear_error(func, msg, phrase):
    with pytest.raises(ImageConversionError, match=phrase):
        func(msg)


BAD_ARRAYS = [
    (np.zeros((4, 4, 3)), "rgb8", r"array dtype float64 does not fit encoding rgb8 \(uint8\)"),
    (np.zeros((4, 4, 4), np.uint8), "rgb8", r"array of shape \(4, 4, 4\) does not fit encoding rgb8"),
    (np.zeros((4, 4), np.uint8), "rgb8", r"does not fit encoding rgb8 \(HxWx3 uint8\)"),
    (np.zeros((4, 4, 3), np.uint8), "mono8", r"does not fit encoding mono8 \(HxW or HxWx1 uint8\)"),
    (np.zeros((4, 4), np.int32), "mono16", r"dtype int32 does not fit encoding mono16"),
    (np.zeros((0, 4, 3), np.uint8), "rgb8", r"zero-size image 4x0"),
    (np.zeros((4, 4), np.uint8), "foo", r"unknown encoding 'foo'"),
]


@pytest.mark.parametrize(("array", "encoding", "phrase"), BAD_ARRAYS)
def test_bad_arrays_raise_when_building(array, encoding, phrase):
    with pytest.raises(ImageConversionError, match=phrase):
        numpy_to_image_fields(array, encoding)
    with pytest.raises(ImageConversionError, match=phrase):
        to_image_msg(array, encoding, RB_HEADER, RbImage)


@pytest.mark.parametrize(
    ("array", "fmt", "encoding", "phrase"),
    [
        (np.zeros((4, 4), np.uint16), "jpeg", "mono16", r"16-bit mono16 must use png"),
        (np.zeros((4, 4), np.uint16), "jpeg", "16UC1", r"16-bit 16UC1 must use png"),
        (np.zeros((4, 4, 2), np.uint8), "png", "yuv422", r"cannot compress yuv422; convert it to rgb8"),
        (np.zeros((4, 4), np.float32), "png", "32FC1", r"cannot compress 32FC1"),
        (np.zeros((4, 4, 3), np.uint8), "webp", "rgb8", r"unknown compression format 'webp'"),
        (np.zeros((4, 4, 3), np.float32), "png", "rgb8", r"dtype float32 does not fit encoding rgb8"),
    ],
)
def test_bad_compression_requests(array, fmt, encoding, phrase):
    with pytest.raises(ImageConversionError, match=phrase):
        numpy_to_compressed_fields(array, fmt, encoding=encoding)
    with pytest.raises(ImageConversionError, match=phrase):
        to_compressed_msg(array, RB_HEADER, RbCompressed, fmt, encoding=encoding)


def test_error_is_a_value_error():
    assert issubclass(ImageConversionError, ValueError)


# ------------------------------------------------------------------------------------------------
# Performance sanity: no copies on the hot path


def test_hd_rgb8_from_rosbags_buffer_is_a_view():
    pixels = random_pixels("rgb8", height=720, width=1280, seed=61)
    msg = to_image_msg(pixels, "rgb8", RB_HEADER, RbImage)
    decoded = image_to_numpy(msg)
    assert np.shares_memory(decoded, msg.data)
    rgb = image_to_rgb(msg)
    assert rgb.flags.c_contiguous and np.shares_memory(rgb, msg.data)
    np.testing.assert_array_equal(rgb, pixels)


# ------------------------------------------------------------------------------------------------
# Pixel cap: a large image is refused before it is decoded


def _zeros_png(width: int, height: int) -> bytes:
    """A real grey png built row by row, so a huge one costs kilobytes, not its decoded size."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(bytes(1 + width)) for _ in range(height)) + compressor.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.mark.parametrize("ext,fmt", [(".png", "png"), (".jpg", "jpeg"), (".jpg", "rgb8; jpeg compressed bgr8")])
def test_compressed_size_is_read_from_the_header(ext, fmt):
    _, buf = cv2.imencode(ext, random_pixels("bgr8", height=37, width=53, seed=3))
    msg = FakeCompressed(format=fmt, data=buf.tobytes())
    assert compressed_size(msg) == (53, 37)
    assert compressed_to_rgb(msg, max_pixels=53 * 37).shape == (37, 53, 3)
    with pytest.raises(ImageTooLargeError, match="1961 pixels, more than the 1960"):
        compressed_to_rgb(msg, max_pixels=53 * 37 - 1)


def test_a_huge_png_is_refused_undecoded():
    msg = FakeCompressed(format="png", data=_zeros_png(20000, 20000))
    assert len(msg.data) < 1_000_000 and compressed_size(msg) == (20000, 20000)
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        compressed_to_rgb(msg, max_pixels=33_554_432)


@pytest.mark.parametrize("data,fmt", [(b"\xff\xd8" + bytes(300), "jpeg"), (b"GIF89a" + bytes(64), "png"), (b"", "png")])
def test_a_stream_without_a_size_header_is_refused_when_capped(data, fmt):
    with pytest.raises(ImageConversionError):
        compressed_to_rgb(FakeCompressed(format=fmt, data=data), max_pixels=1 << 20)


def test_raw_image_pixel_cap():
    fields = numpy_to_image_fields(random_pixels("rgb8", height=20, width=30, seed=4), "rgb8")
    msg = FakeImage(*fields)
    assert image_to_rgb(msg, max_pixels=600).shape == (20, 30, 3)
    with pytest.raises(ImageTooLargeError, match="30x20"):
        image_to_rgb(msg, max_pixels=599)
