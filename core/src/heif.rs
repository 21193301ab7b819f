//! The HEIF container (ISO/IEC 23008-12) that AVIF and HEIC share: ISO-BMFF boxes, the
//! `meta` box's items and properties, grids, auxiliary (alpha) images and image sequences.
//!
//! Bounded by construction: every count and offset is read from input that is already in
//! memory and checked against it before use; nothing is sized from a claimed count (lists
//! grow as entries are actually read, up to [`MAX_ITEMS`]); item data is assembled only after
//! its total length is checked against the file's. No recursion follows input-chosen links,
//! so reference loops cost nothing.

use std::collections::HashMap;

/// Most items, properties or associations read from one file. Real files have a handful
/// (an iPhone photo: ~50 grid tiles, a thumbnail, EXIF); this bounds the bookkeeping.
pub(crate) const MAX_ITEMS: usize = 4096;

/// Why a HEIF file, or a coded image in it, could not be read. Converted to `ProcessError`
/// (with the file's format) in `heif_image.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeifError {
    /// Breaks the container's rules (truncated box, offsets past the end, missing item).
    Corrupt(String),
    /// Valid, but uses something we don't decode (external data references, …).
    Unsupported(String),
}

pub(crate) fn corrupt(reason: impl Into<String>) -> HeifError {
    HeifError::Corrupt(reason.into())
}

pub(crate) fn unsupported(reason: impl Into<String>) -> HeifError {
    HeifError::Unsupported(reason.into())
}

type Result<T> = std::result::Result<T, HeifError>;

/// A cursor over a box body. Every read checks the bytes are there.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| corrupt("a box ends before its fields"))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn fourcc(&mut self) -> Result<[u8; 4]> {
        let b = self.bytes(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }

    /// An unsigned field of 0, 4 (as 32 bits), or 8 bytes, as `iloc` sizes them.
    fn sized(&mut self, size: u8) -> Result<u64> {
        match size {
            0 => Ok(0),
            4 => self.u32().map(u64::from),
            8 => self.u64(),
            other => Err(corrupt(format!("iloc field size {other}"))),
        }
    }

    /// A full box's version and flags.
    fn full_box(&mut self) -> Result<(u8, u32)> {
        let word = self.u32()?;
        Ok(((word >> 24) as u8, word & 0x00FF_FFFF))
    }

    /// A NUL-terminated string (the rest of the body when no NUL).
    fn c_string(&mut self) -> &'a [u8] {
        let rest = &self.data[self.pos..];
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        self.pos = (self.pos + len + 1).min(self.data.len());
        &rest[..len]
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.data[self.pos..];
        self.pos = self.data.len();
        rest
    }
}

/// One ISO-BMFF box: its type, its body, and where the body starts in the whole file.
#[derive(Clone, Copy)]
struct Bmff<'a> {
    kind: [u8; 4],
    body: &'a [u8],
    /// Offset of `body` from the start of the file (file-relative item offsets need it).
    offset: usize,
}

/// The boxes directly inside `data` (which starts at `offset` in the file).
fn children(data: &[u8], offset: usize) -> Result<Vec<Bmff<'_>>> {
    let mut out = Vec::new();
    let mut r = Reader::new(data);
    while r.remaining() > 0 {
        if out.len() >= MAX_ITEMS {
            return Err(unsupported("more boxes than we read in one container"));
        }
        let start = r.pos;
        let size32 = r.u32()?;
        let kind = r.fourcc()?;
        let size = match size32 {
            0 => (data.len() - start) as u64,
            1 => r.u64()?,
            n => u64::from(n),
        };
        let header = (r.pos - start) as u64;
        if size < header || size - header > r.remaining() as u64 {
            return Err(corrupt(format!(
                "box '{}' claims {size} bytes, more than its container holds",
                String::from_utf8_lossy(&kind)
            )));
        }
        let body_len = (size - header) as usize;
        let body_start = r.pos;
        let body = r.bytes(body_len)?;
        out.push(Bmff {
            kind,
            body,
            offset: offset + body_start,
        });
    }
    Ok(out)
}

fn find<'a>(boxes: &[Bmff<'a>], kind: &[u8; 4]) -> Option<Bmff<'a>> {
    boxes.iter().find(|b| &b.kind == kind).copied()
}

/// H.273 colour description from an `nclx` `colr` box or a codec's sequence header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nclx {
    pub primaries: u16,
    pub transfer: u16,
    pub matrix: u16,
    pub full_range: bool,
}

/// How an image's colour is described: code points, an ICC profile, or both (`colr` boxes
/// of each kind may be present).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Colour {
    pub nclx: Option<Nclx>,
    pub icc: Option<Vec<u8>>,
}

/// A clean-aperture crop (`clap`), as fractions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanAperture {
    pub width: (u32, u32),
    pub height: (u32, u32),
    pub horizontal_offset: (i32, u32),
    pub vertical_offset: (i32, u32),
}

impl CleanAperture {
    /// The crop rectangle `(left, top, width, height)` in an image of `width`×`height`, as
    /// libheif and libavif compute it (the aperture's centre is offset from the image's
    /// centre). `None` when it is not a whole-pixel rectangle inside the image.
    pub fn rectangle(&self, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
        let whole = |(n, d): (u32, u32)| (d != 0 && n % d == 0).then(|| n / d);
        let crop_w = whole(self.width)?;
        let crop_h = whole(self.height)?;
        // left = (width - crop_w) / 2 + offset, in halves to stay exact.
        let left2 = twice_start(width, crop_w, self.horizontal_offset)?;
        let top2 = twice_start(height, crop_h, self.vertical_offset)?;
        if left2 % 2 != 0 || top2 % 2 != 0 {
            return None;
        }
        let (left, top) = (left2 / 2, top2 / 2);
        let fits = |start: i64, len: u32, size: u32| {
            start >= 0 && len > 0 && start + i64::from(len) <= i64::from(size)
        };
        if !fits(left, crop_w, width) || !fits(top, crop_h, height) {
            return None;
        }
        Some((left as u32, top as u32, crop_w, crop_h))
    }
}

/// Twice the start of a centred crop of `crop` in `size`, moved by the offset `n / d`.
fn twice_start(size: u32, crop: u32, (n, d): (i32, u32)) -> Option<i64> {
    if d == 0 {
        return None;
    }
    let offset2 = i64::from(n) * 2;
    if offset2 % i64::from(d) != 0 {
        return None;
    }
    Some(i64::from(size) - i64::from(crop) + offset2 / i64::from(d))
}

/// A transformative property, in the order the file associates them (which MIAF fixes as
/// crop, then rotation, then mirror).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transform {
    Crop(CleanAperture),
    /// Anti-clockwise, in quarter turns.
    Rotate(u8),
    /// 0: about a vertical axis (left and right swap); 1: about a horizontal axis.
    Mirror(u8),
}

/// The properties of one item we use.
#[derive(Debug, Clone, Default)]
pub(crate) struct Properties {
    /// `ispe`: the decoded image's size, before transforms.
    pub size: Option<(u32, u32)>,
    pub colour: Colour,
    pub transforms: Vec<Transform>,
    /// `av1C` or `hvcC`: the decoder configuration, whole.
    pub codec_config: Option<(CodecKind, Vec<u8>)>,
    /// `auxC`: what an auxiliary image is (its URN).
    pub aux_type: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodecKind {
    Av1,
    Hevc,
}

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemKind {
    /// A coded image: AV1 (`av01`) or HEVC (`hvc1`).
    Coded(CodecKind),
    /// A grid of other items (`grid`).
    Grid,
    /// EXIF metadata.
    Exif,
    /// Anything else (`mime`, `iden`, `iovl`, `tmap`, …).
    Other([u8; 4]),
}

#[derive(Debug, Clone, Copy)]
struct Extent {
    offset: u64,
    length: u64,
}

#[derive(Debug, Clone, Default)]
struct Location {
    /// 0: offsets in the file; 1: offsets in `idat`.
    construction: u8,
    base_offset: u64,
    extents: Vec<Extent>,
}

/// A grid's layout (`ImageGrid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GridLayout {
    pub rows: u32,
    pub columns: u32,
    pub output_width: u32,
    pub output_height: u32,
}

/// The image a viewer shows: the primary item (or a sequence's first frame), resolved.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    /// Size after decoding, before transforms (a grid's output size).
    pub width: u32,
    pub height: u32,
    pub colour: Colour,
    pub transforms: Vec<Transform>,
    pub coded: Coded,
    /// The alpha plane, if an auxiliary alpha image belongs to the primary.
    pub alpha: Option<Coded>,
    /// Frames in the file: 1 for still images, the sample count for sequences.
    pub frames: u32,
}

/// Coded pixels: one coded image, or a grid of them.
#[derive(Debug, Clone)]
pub(crate) enum Coded {
    Single(Payload),
    Grid {
        layout: GridLayout,
        /// Tile size (all tiles share it).
        tile_width: u32,
        tile_height: u32,
        /// Row-major.
        tiles: Vec<Payload>,
    },
}

/// One coded image's bitstream and decoder configuration.
#[derive(Debug, Clone)]
pub(crate) struct Payload {
    pub codec: CodecKind,
    /// The configuration record (`av1C`/`hvcC`), whole.
    pub config: Vec<u8>,
    pub data: Vec<u8>,
    /// Its `ispe` size (what the decoded picture must measure).
    pub width: u32,
    pub height: u32,
}

struct Meta<'a> {
    file: &'a [u8],
    primary: u32,
    kinds: HashMap<u32, ItemKind>,
    locations: HashMap<u32, Location>,
    idat: Option<&'a [u8]>,
    /// Per item: indices into `properties` (1-based in the file; 0 means none).
    associations: HashMap<u32, Vec<u16>>,
    properties: Vec<Bmff<'a>>,
    /// (type, from, to)
    references: Vec<([u8; 4], u32, u32)>,
}

/// Read a HEIF file's primary image (or a sequence's first frame) without decoding it.
pub(crate) fn read(file: &[u8]) -> Result<Image> {
    let top = children(file, 0)?;
    find(&top, b"ftyp").ok_or_else(|| corrupt("no 'ftyp' box"))?;
    if let Some(meta) = find(&top, b"meta") {
        let meta = parse_meta(file, meta)?;
        let frames = match find(&top, b"moov") {
            Some(moov) => first_track(file, moov).map_or(1, |t| t.frames.max(1)),
            None => 1,
        };
        let mut image = meta.primary_image()?;
        image.frames = frames;
        return Ok(image);
    }
    let moov = find(&top, b"moov").ok_or_else(|| corrupt("neither a 'meta' nor a 'moov' box"))?;
    let track = first_track(file, moov)?;
    Ok(Image {
        width: track.payload.width,
        height: track.payload.height,
        colour: track.colour,
        transforms: Vec::new(),
        coded: Coded::Single(track.payload),
        alpha: None,
        frames: track.frames.max(1),
    })
}

fn parse_meta<'a>(file: &'a [u8], meta: Bmff<'a>) -> Result<Meta<'a>> {
    let mut r = Reader::new(meta.body);
    r.full_box()?;
    let boxes = children(r.rest(), meta.offset + 4)?;
    let primary = {
        let pitm = find(&boxes, b"pitm").ok_or_else(|| corrupt("no primary item ('pitm')"))?;
        let mut r = Reader::new(pitm.body);
        let (version, _) = r.full_box()?;
        if version == 0 {
            u32::from(r.u16()?)
        } else {
            r.u32()?
        }
    };
    let mut out = Meta {
        file,
        primary,
        kinds: HashMap::new(),
        locations: HashMap::new(),
        idat: find(&boxes, b"idat").map(|b| b.body),
        associations: HashMap::new(),
        properties: Vec::new(),
        references: Vec::new(),
    };
    if let Some(iinf) = find(&boxes, b"iinf") {
        out.parse_iinf(iinf.body)?;
    }
    if let Some(iloc) = find(&boxes, b"iloc") {
        out.parse_iloc(iloc.body)?;
    }
    if let Some(iprp) = find(&boxes, b"iprp") {
        let inner = children(iprp.body, iprp.offset)?;
        if let Some(ipco) = find(&inner, b"ipco") {
            out.properties = children(ipco.body, ipco.offset)?;
        }
        for ipma in inner.iter().filter(|b| &b.kind == b"ipma") {
            out.parse_ipma(ipma.body)?;
        }
    }
    if let Some(iref) = find(&boxes, b"iref") {
        out.parse_iref(iref.body)?;
    }
    Ok(out)
}

impl<'a> Meta<'a> {
    fn parse_iinf(&mut self, body: &[u8]) -> Result<()> {
        let mut r = Reader::new(body);
        let (version, _) = r.full_box()?;
        let _count = if version == 0 {
            u32::from(r.u16()?)
        } else {
            r.u32()?
        };
        for infe in children(r.rest(), 0)? {
            if &infe.kind != b"infe" {
                continue;
            }
            if self.kinds.len() >= MAX_ITEMS {
                return Err(unsupported("more items than we read in one file"));
            }
            let mut r = Reader::new(infe.body);
            let (version, _flags) = r.full_box()?;
            if version < 2 {
                // Versions 0 and 1 predate item types; HEIF requires 2 or 3.
                continue;
            }
            let id = if version == 2 {
                u32::from(r.u16()?)
            } else {
                r.u32()?
            };
            let _protection = r.u16()?;
            let kind = match &r.fourcc()? {
                b"av01" => ItemKind::Coded(CodecKind::Av1),
                b"hvc1" => ItemKind::Coded(CodecKind::Hevc),
                b"grid" => ItemKind::Grid,
                b"Exif" => ItemKind::Exif,
                other => ItemKind::Other(*other),
            };
            self.kinds.insert(id, kind);
        }
        Ok(())
    }

    fn parse_iloc(&mut self, body: &[u8]) -> Result<()> {
        let mut r = Reader::new(body);
        let (version, _) = r.full_box()?;
        if version > 2 {
            return Err(unsupported(format!("iloc version {version}")));
        }
        let sizes = r.u16()?;
        let offset_size = (sizes >> 12) as u8;
        let length_size = ((sizes >> 8) & 0xF) as u8;
        let base_offset_size = ((sizes >> 4) & 0xF) as u8;
        let index_size = if version >= 1 { (sizes & 0xF) as u8 } else { 0 };
        let count = if version < 2 {
            u32::from(r.u16()?)
        } else {
            r.u32()?
        };
        for _ in 0..count {
            if self.locations.len() >= MAX_ITEMS {
                return Err(unsupported("more items than we read in one file"));
            }
            let id = if version < 2 {
                u32::from(r.u16()?)
            } else {
                r.u32()?
            };
            let construction = if version >= 1 {
                (r.u16()? & 0xF) as u8
            } else {
                0
            };
            let data_reference = r.u16()?;
            let base_offset = r.sized(base_offset_size)?;
            let extent_count = r.u16()?;
            let mut extents = Vec::new();
            for _ in 0..extent_count {
                if version >= 1 && index_size > 0 {
                    r.sized(index_size)?;
                }
                let offset = r.sized(offset_size)?;
                let length = r.sized(length_size)?;
                extents.push(Extent { offset, length });
            }
            if data_reference != 0 {
                // Data in another file: nothing we can read. Only an error if it is used.
                continue;
            }
            self.locations.insert(
                id,
                Location {
                    construction,
                    base_offset,
                    extents,
                },
            );
        }
        Ok(())
    }

    fn parse_ipma(&mut self, body: &[u8]) -> Result<()> {
        let mut r = Reader::new(body);
        let (version, flags) = r.full_box()?;
        let count = r.u32()?;
        for _ in 0..count {
            if self.associations.len() >= MAX_ITEMS {
                return Err(unsupported("more items than we read in one file"));
            }
            let id = if version < 1 {
                u32::from(r.u16()?)
            } else {
                r.u32()?
            };
            let n = r.u8()?;
            let mut indices = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let index = if flags & 1 == 1 {
                    r.u16()? & 0x7FFF
                } else {
                    u16::from(r.u8()? & 0x7F)
                };
                indices.push(index);
            }
            self.associations.entry(id).or_default().extend(indices);
        }
        Ok(())
    }

    fn parse_iref(&mut self, body: &[u8]) -> Result<()> {
        let mut r = Reader::new(body);
        let (version, _) = r.full_box()?;
        for reference in children(r.rest(), 0)? {
            let mut r = Reader::new(reference.body);
            let id = |r: &mut Reader| -> Result<u32> {
                if version == 0 {
                    r.u16().map(u32::from)
                } else {
                    r.u32()
                }
            };
            let from = id(&mut r)?;
            let count = r.u16()?;
            for _ in 0..count {
                if self.references.len() >= MAX_ITEMS {
                    return Err(unsupported("more item references than we read in one file"));
                }
                let to = id(&mut r)?;
                self.references.push((reference.kind, from, to));
            }
        }
        Ok(())
    }

    fn properties_of(&self, id: u32) -> Result<Properties> {
        let mut props = Properties::default();
        let Some(indices) = self.associations.get(&id) else {
            return Ok(props);
        };
        for &index in indices {
            if index == 0 {
                continue;
            }
            let Some(prop) = self.properties.get(usize::from(index) - 1) else {
                return Err(corrupt(format!("property {index} does not exist")));
            };
            let mut r = Reader::new(prop.body);
            match &prop.kind {
                b"ispe" => {
                    r.full_box()?;
                    props.size = Some((r.u32()?, r.u32()?));
                }
                b"colr" => read_colr(&mut r, &mut props.colour)?,
                b"irot" => props.transforms.push(Transform::Rotate(r.u8()? & 3)),
                b"imir" => props.transforms.push(Transform::Mirror(r.u8()? & 1)),
                b"clap" => {
                    let width = (r.u32()?, r.u32()?);
                    let height = (r.u32()?, r.u32()?);
                    let horizontal_offset = (r.u32()? as i32, r.u32()?);
                    let vertical_offset = (r.u32()? as i32, r.u32()?);
                    props.transforms.push(Transform::Crop(CleanAperture {
                        width,
                        height,
                        horizontal_offset,
                        vertical_offset,
                    }));
                }
                b"av1C" => props.codec_config = Some((CodecKind::Av1, prop.body.to_vec())),
                b"hvcC" => props.codec_config = Some((CodecKind::Hevc, prop.body.to_vec())),
                b"auxC" => {
                    r.full_box()?;
                    props.aux_type = Some(r.c_string().to_vec());
                }
                _ => {}
            }
        }
        Ok(props)
    }

    /// The item's data, its extents joined. The total is checked against the file's size
    /// before anything is copied, so overlapping extents can't multiply the input.
    fn item_data(&self, id: u32) -> Result<Vec<u8>> {
        let location = self
            .locations
            .get(&id)
            .ok_or_else(|| corrupt(format!("item {id} has no location")))?;
        let source: &[u8] = match location.construction {
            0 => self.file,
            1 => self
                .idat
                .ok_or_else(|| corrupt("an item is in 'idat' but there is none"))?,
            other => return Err(unsupported(format!("item construction method {other}"))),
        };
        let mut total: u64 = 0;
        let mut ranges = Vec::with_capacity(location.extents.len());
        for extent in &location.extents {
            let start = location
                .base_offset
                .checked_add(extent.offset)
                .ok_or_else(|| corrupt("an item offset overflows"))?;
            // Length 0 means "to the end of the source".
            let length = if extent.length == 0 {
                (source.len() as u64).saturating_sub(start)
            } else {
                extent.length
            };
            let end = start
                .checked_add(length)
                .filter(|&end| end <= source.len() as u64)
                .ok_or_else(|| {
                    corrupt(format!("item {id}'s data lies past the end of the file"))
                })?;
            total = total.saturating_add(length);
            ranges.push((start as usize, end as usize));
        }
        if total > source.len() as u64 {
            return Err(corrupt(format!(
                "item {id}'s extents add up to more than the file"
            )));
        }
        let mut data = Vec::with_capacity(total as usize);
        for (start, end) in ranges {
            data.extend_from_slice(&source[start..end]);
        }
        Ok(data)
    }

    fn referenced(&self, kind: &[u8; 4], from: u32) -> impl Iterator<Item = u32> + '_ {
        let kind = *kind;
        self.references
            .iter()
            .filter(move |(k, f, _)| *k == kind && *f == from)
            .map(|(_, _, to)| *to)
    }

    fn referencing(&self, kind: &[u8; 4], to: u32) -> impl Iterator<Item = u32> + '_ {
        let kind = *kind;
        self.references
            .iter()
            .filter(move |(k, _, t)| *k == kind && *t == to)
            .map(|(_, from, _)| *from)
    }

    fn payload(&self, id: u32) -> Result<Payload> {
        let codec = match self.kinds.get(&id) {
            Some(ItemKind::Coded(codec)) => *codec,
            Some(ItemKind::Other(kind)) => {
                return Err(unsupported(format!(
                    "image item type '{}'",
                    String::from_utf8_lossy(kind)
                )));
            }
            Some(_) => return Err(corrupt(format!("item {id} is not a coded image"))),
            None => return Err(corrupt(format!("item {id} does not exist"))),
        };
        let props = self.properties_of(id)?;
        let (width, height) = props
            .size
            .ok_or_else(|| corrupt(format!("item {id} has no size ('ispe')")))?;
        let config = match props.codec_config {
            Some((kind, config)) if kind == codec => config,
            _ => return Err(corrupt(format!("item {id} has no decoder configuration"))),
        };
        Ok(Payload {
            codec,
            config,
            data: self.item_data(id)?,
            width,
            height,
        })
    }

    /// A coded item or grid, with its size. Grid tiles are checked to be coded images of
    /// one size that cover the output; nothing is decoded.
    fn coded(&self, id: u32) -> Result<(Coded, u32, u32)> {
        match self.kinds.get(&id) {
            Some(ItemKind::Grid) => {
                let data = self.item_data(id)?;
                let layout = parse_grid(&data)?;
                let tile_ids: Vec<u32> = self.referenced(b"dimg", id).collect();
                let expected = u64::from(layout.rows) * u64::from(layout.columns);
                if tile_ids.len() as u64 != expected {
                    return Err(corrupt(format!(
                        "a {}x{} grid references {} tiles",
                        layout.columns,
                        layout.rows,
                        tile_ids.len()
                    )));
                }
                let mut tiles = Vec::with_capacity(tile_ids.len());
                for tile in tile_ids {
                    if tile == id {
                        return Err(corrupt("a grid contains itself"));
                    }
                    tiles.push(self.payload(tile)?);
                }
                let (tile_width, tile_height) = tiles
                    .first()
                    .map(|t| (t.width, t.height))
                    .ok_or_else(|| corrupt("a grid without tiles"))?;
                if tiles
                    .iter()
                    .any(|t| (t.width, t.height) != (tile_width, tile_height))
                {
                    return Err(unsupported("grid tiles of different sizes"));
                }
                let covers = |tile: u32, count: u32, output: u32| {
                    let total = u64::from(tile) * u64::from(count);
                    total >= u64::from(output) && total - u64::from(tile) < u64::from(output)
                };
                if !covers(tile_width, layout.columns, layout.output_width)
                    || !covers(tile_height, layout.rows, layout.output_height)
                {
                    return Err(corrupt("grid tiles do not match the grid's output size"));
                }
                let (w, h) = (layout.output_width, layout.output_height);
                Ok((
                    Coded::Grid {
                        layout,
                        tile_width,
                        tile_height,
                        tiles,
                    },
                    w,
                    h,
                ))
            }
            _ => {
                let payload = self.payload(id)?;
                let (w, h) = (payload.width, payload.height);
                Ok((Coded::Single(payload), w, h))
            }
        }
    }

    fn primary_image(&self) -> Result<Image> {
        let props = self.properties_of(self.primary)?;
        let (coded, width, height) = self.coded(self.primary)?;
        let alpha = self
            .referencing(b"auxl", self.primary)
            .find(|&aux| {
                self.properties_of(aux)
                    .ok()
                    .and_then(|p| p.aux_type)
                    .is_some_and(|urn| {
                        urn == b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha"
                            || urn == b"urn:mpeg:hevc:2015:auxid:1"
                    })
            })
            .map(|aux| self.coded(aux))
            .transpose()?
            .and_then(|(coded, w, h)| ((w, h) == (width, height)).then_some(coded));
        Ok(Image {
            width,
            height,
            colour: props.colour,
            transforms: props.transforms,
            coded,
            alpha,
            frames: 1,
        })
    }
}

/// A `colr` box: code points (`nclx`) or an ICC profile (`prof`, `rICC`). The first of each
/// kind counts.
fn read_colr(r: &mut Reader<'_>, colour: &mut Colour) -> Result<()> {
    match &r.fourcc()? {
        b"nclx" => {
            let nclx = Nclx {
                primaries: r.u16()?,
                transfer: r.u16()?,
                matrix: r.u16()?,
                full_range: r.u8()? & 0x80 != 0,
            };
            colour.nclx.get_or_insert(nclx);
        }
        b"prof" | b"rICC" if colour.icc.is_none() => colour.icc = Some(r.rest().to_vec()),
        _ => {}
    }
    Ok(())
}

fn parse_grid(data: &[u8]) -> Result<GridLayout> {
    let mut r = Reader::new(data);
    let version = r.u8()?;
    if version != 0 {
        return Err(unsupported(format!("grid version {version}")));
    }
    let flags = r.u8()?;
    let rows = u32::from(r.u8()?) + 1;
    let columns = u32::from(r.u8()?) + 1;
    let (output_width, output_height) = if flags & 1 == 1 {
        (r.u32()?, r.u32()?)
    } else {
        (u32::from(r.u16()?), u32::from(r.u16()?))
    };
    Ok(GridLayout {
        rows,
        columns,
        output_width,
        output_height,
    })
}

struct Track {
    payload: Payload,
    colour: Colour,
    frames: u32,
}

/// The first video track's first sample: an image sequence's first frame.
fn first_track(file: &[u8], moov: Bmff<'_>) -> Result<Track> {
    for trak in children(moov.body, moov.offset)?
        .into_iter()
        .filter(|b| &b.kind == b"trak")
    {
        let trak_boxes = children(trak.body, trak.offset)?;
        let Some(mdia) = find(&trak_boxes, b"mdia") else {
            continue;
        };
        let mdia_boxes = children(mdia.body, mdia.offset)?;
        let handler = find(&mdia_boxes, b"hdlr").and_then(|h| h.body.get(8..12));
        if !matches!(handler, Some(b"pict") | Some(b"vide")) {
            continue;
        }
        let minf = find(&mdia_boxes, b"minf").ok_or_else(|| corrupt("a track without 'minf'"))?;
        let minf_boxes = children(minf.body, minf.offset)?;
        let stbl = find(&minf_boxes, b"stbl").ok_or_else(|| corrupt("a track without 'stbl'"))?;
        let stbl_boxes = children(stbl.body, stbl.offset)?;
        return read_first_sample(file, &stbl_boxes);
    }
    Err(corrupt("no video track"))
}

fn read_first_sample(file: &[u8], stbl: &[Bmff<'_>]) -> Result<Track> {
    // Sample description: the first entry's codec, size and colour.
    let stsd = find(stbl, b"stsd").ok_or_else(|| corrupt("no sample description ('stsd')"))?;
    let mut r = Reader::new(stsd.body);
    r.full_box()?;
    let _entries = r.u32()?;
    let entries = children(r.rest(), 0)?;
    let entry = entries
        .first()
        .ok_or_else(|| corrupt("an empty sample description"))?;
    let codec = match &entry.kind {
        b"av01" => CodecKind::Av1,
        b"hvc1" | b"hev1" => CodecKind::Hevc,
        other => {
            return Err(unsupported(format!(
                "sequence codec '{}'",
                String::from_utf8_lossy(other)
            )));
        }
    };
    // VisualSampleEntry: 6 reserved, 2 data reference index, 16 pre-defined/reserved, then
    // width and height (u16 each), then 50 more bytes before the child boxes.
    let mut r = Reader::new(entry.body);
    r.bytes(24)?;
    let width = u32::from(r.u16()?);
    let height = u32::from(r.u16()?);
    r.bytes(50)?;
    let mut colour = Colour::default();
    let mut config = None;
    for child in children(r.rest(), 0)? {
        let mut r = Reader::new(child.body);
        match &child.kind {
            b"av1C" | b"hvcC" => config = Some(child.body.to_vec()),
            b"colr" => read_colr(&mut r, &mut colour)?,
            _ => {}
        }
    }
    let config = config.ok_or_else(|| corrupt("a sequence without a decoder configuration"))?;

    // Sample sizes: the first one, and how many there are.
    let stsz = find(stbl, b"stsz").ok_or_else(|| corrupt("no sample sizes ('stsz')"))?;
    let mut r = Reader::new(stsz.body);
    r.full_box()?;
    let fixed = r.u32()?;
    let count = r.u32()?;
    if count == 0 {
        return Err(corrupt("a sequence without samples"));
    }
    let first_size = if fixed != 0 { fixed } else { r.u32()? };

    // The first chunk's offset holds the first sample.
    let offset = if let Some(stco) = find(stbl, b"stco") {
        let mut r = Reader::new(stco.body);
        r.full_box()?;
        if r.u32()? == 0 {
            return Err(corrupt("no chunk offsets"));
        }
        u64::from(r.u32()?)
    } else if let Some(co64) = find(stbl, b"co64") {
        let mut r = Reader::new(co64.body);
        r.full_box()?;
        if r.u32()? == 0 {
            return Err(corrupt("no chunk offsets"));
        }
        r.u64()?
    } else {
        return Err(corrupt("no chunk offsets ('stco')"));
    };
    let end = offset
        .checked_add(u64::from(first_size))
        .filter(|&end| end <= file.len() as u64)
        .ok_or_else(|| corrupt("the first frame lies past the end of the file"))?;
    Ok(Track {
        payload: Payload {
            codec,
            config,
            data: file[offset as usize..end as usize].to_vec(),
            width,
            height,
        },
        colour,
        frames: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clap(w: u32, h: u32, dx: (i32, u32), dy: (i32, u32)) -> CleanAperture {
        CleanAperture {
            width: (w, 1),
            height: (h, 1),
            horizontal_offset: dx,
            vertical_offset: dy,
        }
    }

    #[test]
    fn a_centred_clean_aperture_crops_equally_from_both_sides() {
        assert_eq!(
            clap(100, 50, (0, 1), (0, 1)).rectangle(120, 70),
            Some((10, 10, 100, 50))
        );
    }

    #[test]
    fn a_clean_aperture_offset_moves_the_crop() {
        assert_eq!(
            clap(100, 50, (-10, 1), (5, 1)).rectangle(120, 70),
            Some((0, 15, 100, 50))
        );
    }

    #[test]
    fn a_clean_aperture_outside_the_image_or_between_pixels_is_refused() {
        assert_eq!(clap(100, 50, (-11, 1), (0, 1)).rectangle(120, 70), None);
        assert_eq!(clap(101, 50, (0, 1), (0, 1)).rectangle(120, 70), None);
        assert_eq!(clap(0, 50, (0, 1), (0, 1)).rectangle(120, 70), None);
        assert_eq!(clap(100, 50, (0, 0), (0, 1)).rectangle(120, 70), None);
    }

    #[test]
    fn a_box_claiming_more_than_its_container_is_corrupt() {
        let data = [0, 0, 0, 200, b'f', b't', b'y', b'p', 0, 0];
        assert!(matches!(children(&data, 0), Err(HeifError::Corrupt(_))));
    }
}
