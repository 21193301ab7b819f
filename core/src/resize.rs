//! Resampling with fast_image_resize: Lanczos3, alpha premultiplied so edges don't darken.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbImage, RgbaImage};

use crate::error::ProcessError;
use crate::geometry::Region;

/// Resample `region` of `src` (8-bit RGB or RGBA) to exactly `width × height`.
pub(crate) fn resample(
    src: &DynamicImage,
    region: Region,
    width: u32,
    height: u32,
) -> Result<DynamicImage, ProcessError> {
    let internal = |reason: String| ProcessError::Internal {
        stage: "resizing",
        reason,
    };
    let pixel_type = match src {
        DynamicImage::ImageRgb8(_) => PixelType::U8x3,
        DynamicImage::ImageRgba8(_) => PixelType::U8x4,
        _ => return Err(internal(format!("unexpected pixel type {:?}", src.color()))),
    };
    let source = ImageRef::new(src.width(), src.height(), src.as_bytes(), pixel_type)
        .map_err(|e| internal(e.to_string()))?;
    let mut target = Image::new(width, height, pixel_type);
    // `use_alpha` (the default) premultiplies RGBA before filtering and divides after.
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .crop(region.left, region.top, region.width, region.height);
    Resizer::new()
        .resize(&source, &mut target, &options)
        .map_err(|e| internal(e.to_string()))?;
    let buffer = target.into_vec();
    let image = match pixel_type {
        PixelType::U8x3 => RgbImage::from_raw(width, height, buffer).map(DynamicImage::ImageRgb8),
        _ => RgbaImage::from_raw(width, height, buffer).map(DynamicImage::ImageRgba8),
    };
    image.ok_or_else(|| internal("resized buffer has the wrong length".into()))
}

/// The whole image as a region.
pub(crate) fn whole(image: &DynamicImage) -> Region {
    Region {
        left: 0.0,
        top: 0.0,
        width: f64::from(image.width()),
        height: f64::from(image.height()),
    }
}
