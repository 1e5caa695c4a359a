"""Decoding, cropping and resizing with PIL, shared by every reader. Images are always RGB (never cv2/BGR)."""
import numpy as np
import PIL.Image

from dnnlib.util import UserError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff', '.ppm')


def _one_line(error):
    return ' '.join(str(error).split()) or type(error).__name__


def open_image(file, name):
    """Open and fully decode `file` (a path or file object), so a corrupt file fails here and names `name`."""
    try:
        image = PIL.Image.open(file)
        image.load()
    except FileNotFoundError:
        raise UserError(f'{name}: file not found; re-download the dataset or fix its file list') from None
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as e:
        raise UserError(f'{name}: cannot decode image ({_one_line(e)}); re-download or delete the file') from None
    return image


def read_rgb(file, name):
    # Convert before any resize: PIL resizes palette images with NEAREST and RGBA ones premultiplied.
    return open_image(file, name).convert('RGB')


def center_square(width, height):
    """Box (left, top, right, bottom) of the largest centred square, offset (long - short) // 2 as in DRCDataset."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


def crop_resize(image, box, size, resample=PIL.Image.BILINEAR):
    # Crop first: resize(box=...) would let the filter read pixels outside the box, unlike the original crop+resize.
    return image.crop(box).resize((size, size), resample)


def to_chw(image):
    """PIL RGB -> uint8 [3, H, W]."""
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def train_crop(image, resolution):
    """The training framing: largest centred square, PIL bilinear (antialiased) resize to R x R, uint8 CHW."""
    return to_chw(crop_resize(image, center_square(*image.size), resolution))


def check_same_size(image, mask, image_name, mask_name):
    if image.size != mask.size:
        raise UserError(f'{mask_name}: mask is {mask.size[0]}x{mask.size[1]} but its image {image_name} is '
                        f'{image.size[0]}x{image.size[1]}; masks must match their images pixel for pixel')


def soft_mask_threshold(mask, name):
    """torchvision ToTensor()(mask)[0] > 0.5 on an as-is PIL mask: uint8 channel 0 above 127.5 -> 1."""
    array = np.asarray(mask)
    if array.dtype == bool:  # mode '1': ToTensor maps True to 1.0
        return array.astype(np.uint8)
    if array.dtype != np.uint8:
        raise UserError(f'{name}: unsupported mask mode {mask.mode!r}; save the mask as 8-bit grey PNG')
    if array.ndim == 3:
        array = array[..., 0]
    return (array > 127.5).astype(np.uint8)
