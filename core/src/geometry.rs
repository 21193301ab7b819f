//! Pure output geometry: how big the display image is and which region the thumbnail shows.

/// Longest side of the display image.
pub const DISPLAY_MAX_SIDE: u32 = 2048;
/// Side of the square thumbnail.
pub const THUMBNAIL_SIDE: u32 = 400;

/// The size that fits `(width, height)` inside `max × max` keeping the aspect ratio, never
/// enlarging (sharp's `fit: 'inside', withoutEnlargement: true`). Sides round to nearest and
/// are at least 1.
pub fn fit_inside(width: u32, height: u32, max: u32) -> (u32, u32) {
    if width <= max && height <= max {
        return (width, height);
    }
    let scale = f64::from(max) / f64::from(width.max(height));
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).clamp(1, max);
    (side(width), side(height))
}

/// A sub-pixel source region, in source pixel units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// The centred square region of a `width × height` image that, scaled to `side × side`,
/// covers it (sharp's `fit: 'cover'` with centre gravity). Small images are enlarged.
pub fn cover_crop(width: u32, height: u32) -> Region {
    let (w, h) = (f64::from(width), f64::from(height));
    let crop = w.min(h);
    Region {
        left: (w - crop) / 2.0,
        top: (h - crop) / 2.0,
        width: crop,
        height: crop,
    }
}
