//! Colour management: embedded ICC profiles are converted to sRGB, then dropped.

use std::sync::Arc;

use image::DynamicImage;

use crate::decode::Cicp;
use crate::error::ProcessError;
use moxcms::{
    CicpColorPrimaries, CicpProfile, ColorProfile, DataColorSpace, Layout, MatrixCoefficients,
    TransferCharacteristics, Transform8BitExecutor, TransformOptions,
};

/// A ready transform from the source's RGB profile to sRGB, for RGB and RGBA buffers.
pub(crate) struct ToSrgb {
    rgb: Arc<Transform8BitExecutor>,
    rgba: Arc<Transform8BitExecutor>,
}

impl std::fmt::Debug for ToSrgb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToSrgb")
    }
}

impl ToSrgb {
    /// Build the transform for an embedded profile. `None` when there is nothing to do or
    /// the profile can't be used: an unparseable or non-RGB profile is ignored, as browsers
    /// do, rather than refusing the photo.
    pub fn from_icc(icc: &[u8]) -> Option<ToSrgb> {
        Self::from_profile(&ColorProfile::new_from_slice(icc).ok()?)
    }

    /// Build the transform for a CICP description (PNG `cICP`). `None` for sRGB itself, for
    /// non-RGB matrices and for code points we don't know.
    pub fn from_cicp(cicp: Cicp) -> Option<ToSrgb> {
        let Cicp {
            primaries,
            transfer,
            matrix,
            full_range,
        } = cicp;
        const SRGB: (u8, u8) = (1, 13);
        const IDENTITY_MATRIX: u8 = 0;
        if (primaries, transfer) == SRGB || matrix != IDENTITY_MATRIX || !full_range {
            return None;
        }
        let cicp = CicpProfile {
            color_primaries: CicpColorPrimaries::try_from(primaries).ok()?,
            transfer_characteristics: TransferCharacteristics::try_from(transfer).ok()?,
            matrix_coefficients: MatrixCoefficients::try_from(matrix).ok()?,
            full_range,
        };
        Self::from_profile(&ColorProfile::new_from_cicp(cicp))
    }

    fn from_profile(source: &ColorProfile) -> Option<ToSrgb> {
        // Gray profiles describe our already-expanded gray data only approximately, and
        // CMYK data was converted to RGB by the decoder; both are used as is.
        if source.color_space != DataColorSpace::Rgb {
            return None;
        }
        let srgb = ColorProfile::new_srgb();
        let options = TransformOptions::default();
        let rgb = source
            .create_transform_8bit(Layout::Rgb, &srgb, Layout::Rgb, options)
            .ok()?;
        let rgba = source
            .create_transform_8bit(Layout::Rgba, &srgb, Layout::Rgba, options)
            .ok()?;
        Some(ToSrgb { rgb, rgba })
    }

    /// Convert an 8-bit RGB or RGBA image in place. Alpha is passed through.
    pub fn apply(&self, image: &mut DynamicImage) -> Result<(), ProcessError> {
        let (executor, buffer) = match image {
            DynamicImage::ImageRgb8(buffer) => (&self.rgb, buffer.as_mut()),
            DynamicImage::ImageRgba8(buffer) => (&self.rgba, buffer.as_mut()),
            _ => return Ok(()),
        };
        let source = buffer.to_vec();
        executor
            .transform(&source, buffer)
            .map_err(|e| ProcessError::Internal {
                stage: "converting colour to sRGB",
                reason: e.to_string(),
            })
    }
}
