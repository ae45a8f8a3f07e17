//! Reading WAVs (PCM and float through `hound`, A-law by hand) and writing A-law WAVs.
//!
//! `hound` reads integer PCM of 8 to 32 bits and 32-bit float, but not A-law (format tag 6), and
//! cannot write A-law either: the small RIFF reader and writer for A-law here are privnum's own.

use std::io::Cursor;

use super::alaw;
use super::ToneError;

/// Samples as -1.0..=1.0, interleaved.
#[derive(Debug, Clone)]
pub struct Audio {
    pub format: String,
    pub is_alaw: bool,
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    /// Frames (one sample per channel).
    pub frames: usize,
    pub samples: Vec<f32>,
}

/// The header this module writes: RIFF + fmt (18) + fact + data headers.
pub const ALAW_HEADER_BYTES: usize = 12 + 8 + 18 + 8 + 4 + 8;

const WAVE_FORMAT_ALAW: u16 = 6;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// One RIFF chunk: its four-character id and its body.
type Chunk<'a> = ([u8; 4], &'a [u8]);

/// The chunks of a RIFF/WAVE file.
fn chunks(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, ToneError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(ToneError::NotWav("it does not start with a RIFF/WAVE header".into()));
    }
    let mut found = Vec::new();
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let size = u32_at(bytes, at + 4).unwrap_or(0) as usize;
        let body = bytes.get(at + 8..at + 8 + size).ok_or_else(|| {
            ToneError::Truncated(format!(
                "the {:?} chunk says {size} bytes but the file ends first",
                String::from_utf8_lossy(&id)
            ))
        })?;
        found.push((id, body));
        at += 8 + size + (size & 1);
    }
    Ok(found)
}

/// Reads a WAV of any supported encoding that has something to play: a WAV without samples, or
/// with a sample rate of 0 (nothing could be converted or timed), is refused.
pub fn read(bytes: &[u8]) -> Result<Audio, ToneError> {
    let audio = read_encoded(bytes)?;
    if audio.sample_rate == 0 {
        return Err(ToneError::Unsupported("a sample rate of 0 Hz".into()));
    }
    if audio.frames == 0 {
        return Err(ToneError::Truncated("it has no samples: there is nothing to play".into()));
    }
    Ok(audio)
}

fn read_encoded(bytes: &[u8]) -> Result<Audio, ToneError> {
    let chunks = chunks(bytes)?;
    let fmt = chunks.iter().find(|(id, _)| id == b"fmt ").map(|(_, body)| *body);
    let fmt = fmt.ok_or_else(|| ToneError::Truncated("there is no fmt chunk".into()))?;
    let tag = u16_at(fmt, 0).ok_or_else(|| ToneError::Truncated("the fmt chunk is too short".into()))?;
    if tag == WAVE_FORMAT_ALAW {
        return read_alaw(fmt, &chunks);
    }
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|err| match err {
        hound::Error::Unsupported => ToneError::Unsupported(format!("format tag {tag}")),
        hound::Error::FormatError(what) => ToneError::Truncated(what.to_owned()),
        other => ToneError::Truncated(other.to_string()),
    })?;
    let spec = reader.spec();
    let samples: Result<Vec<f32>, hound::Error> = match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().collect(),
        hound::SampleFormat::Int => {
            let scale = 2f32.powi(i32::from(spec.bits_per_sample) - 1);
            reader.into_samples::<i32>().map(|s| s.map(|s| s as f32 / scale)).collect()
        }
    };
    let samples = samples.map_err(|err| ToneError::Truncated(format!("reading the samples: {err}")))?;
    let format = match spec.sample_format {
        hound::SampleFormat::Float => format!("{}-bit float PCM", spec.bits_per_sample),
        hound::SampleFormat::Int => format!("{}-bit PCM", spec.bits_per_sample),
    };
    Ok(Audio {
        format,
        is_alaw: false,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits_per_sample: spec.bits_per_sample,
        frames: samples.len() / usize::from(spec.channels.max(1)),
        samples,
    })
}

fn read_alaw(fmt: &[u8], chunks: &[Chunk<'_>]) -> Result<Audio, ToneError> {
    let short = || ToneError::Truncated("the fmt chunk is too short".into());
    let channels = u16_at(fmt, 2).ok_or_else(short)?;
    let sample_rate = u32_at(fmt, 4).ok_or_else(short)?;
    let bits_per_sample = u16_at(fmt, 14).ok_or_else(short)?;
    if channels == 0 || bits_per_sample != 8 {
        return Err(ToneError::Unsupported(format!("A-law with {channels} channels of {bits_per_sample} bits")));
    }
    let data = chunks.iter().find(|(id, _)| id == b"data").map(|(_, body)| *body);
    let data = data.ok_or_else(|| ToneError::Truncated("there is no data chunk".into()))?;
    Ok(Audio {
        format: "A-law".into(),
        is_alaw: true,
        sample_rate,
        channels,
        bits_per_sample,
        frames: data.len() / usize::from(channels),
        samples: data.iter().map(|code| alaw::decode(*code)).collect(),
    })
}

/// A mono, 8000 Hz A-law WAV of `codes`, with the fmt extension size and fact chunk that
/// non-PCM WAVs carry.
pub fn write_alaw(codes: &[u8]) -> Vec<u8> {
    let data_len = codes.len() as u32;
    let pad = (codes.len() & 1) as u32;
    let mut out = Vec::with_capacity(ALAW_HEADER_BYTES + codes.len() + 1);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(4 + (8 + 18) + (8 + 4) + (8 + data_len + pad)).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&18u32.to_le_bytes());
    out.extend_from_slice(&WAVE_FORMAT_ALAW.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes()); // samples per second
    out.extend_from_slice(&8000u32.to_le_bytes()); // bytes per second: 64 kbit/s
    out.extend_from_slice(&1u16.to_le_bytes()); // block align
    out.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(&0u16.to_le_bytes()); // no extension bytes
    out.extend_from_slice(b"fact");
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(codes);
    if pad == 1 {
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{read, write_alaw};
    use crate::tone::ToneError;

    #[test]
    fn a_wav_with_nothing_to_play_is_refused() {
        assert!(read(&write_alaw(&[0xd5; 80])).is_ok());
        assert!(matches!(read(&write_alaw(&[])), Err(ToneError::Truncated(why)) if why.contains("no samples")));
        let mut zero_rate = write_alaw(&[0xd5; 80]);
        // The fmt chunk's body starts at byte 20; its sample rate is the u32 at offset 4.
        zero_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(read(&zero_rate), Err(ToneError::Unsupported(why)) if why.contains("0 Hz")));
    }
}

/// Properties of the WAV reader and writer on generated, cut and damaged files
/// (crate::fuzzing says how many cases and how to run more).
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::tone::{inspect, to_carrier_format, MAX_BYTES};
    use proptest::prelude::*;

    /// A PCM or float WAV as `hound` writes it, and the samples it holds (-1.0..=1.0).
    fn pcm_wav() -> impl Strategy<Value = (Vec<u8>, hound::WavSpec, Vec<f32>)> {
        let format = prop_oneof![
            Just((hound::SampleFormat::Int, 8u16)),
            Just((hound::SampleFormat::Int, 16)),
            Just((hound::SampleFormat::Int, 24)),
            Just((hound::SampleFormat::Int, 32)),
            Just((hound::SampleFormat::Float, 32)),
        ];
        (format, 1u16..=3, prop_oneof![Just(8000u32), Just(44_100), 1000u32..=96_000], 1usize..120)
            .prop_flat_map(|((sample_format, bits), channels, sample_rate, frames)| {
                let spec = hound::WavSpec { channels, sample_rate, bits_per_sample: bits, sample_format };
                (Just(spec), proptest::collection::vec(-1.0f32..=1.0, frames * usize::from(channels)))
            })
            .prop_map(|(spec, samples)| {
                let mut out = Cursor::new(Vec::new());
                let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
                let scale = 2f32.powi(i32::from(spec.bits_per_sample) - 1);
                for sample in &samples {
                    match spec.sample_format {
                        hound::SampleFormat::Float => writer.write_sample(*sample).unwrap(),
                        hound::SampleFormat::Int => {
                            let int = (f64::from(*sample) * f64::from(scale)).round() as i64;
                            let int = int.clamp(-(scale as i64), scale as i64 - 1) as i32;
                            writer.write_sample(int).unwrap();
                        }
                    }
                }
                writer.finalize().unwrap();
                (out.into_inner(), spec, samples)
            })
    }

    /// A WAV of either kind (A-law as [`write_alaw`] writes it).
    fn any_wav() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 1..400).prop_map(|codes| write_alaw(&codes)),
            pcm_wav().prop_map(|(bytes, _, _)| bytes),
        ]
    }

    /// What a read must hold whatever the input: something to play, at a rate, in whole frames.
    fn check_read(audio: &Audio) -> Result<(), TestCaseError> {
        prop_assert!(audio.sample_rate > 0 && audio.frames > 0 && audio.channels > 0);
        prop_assert!(audio.frames * usize::from(audio.channels) <= audio.samples.len());
        prop_assert!(audio.samples.iter().all(|s| s.is_finite() || !audio.is_alaw));
        Ok(())
    }

    /// Checks a read and, when it is short enough to convert quickly, the conversion: what comes
    /// out is in the carrier's format and within its size.
    fn check_any(bytes: &[u8]) -> Result<(), TestCaseError> {
        match read(bytes) {
            Err(err) => prop_assert!(!err.to_string().is_empty()),
            Ok(audio) => {
                check_read(&audio)?;
                prop_assert!(inspect(bytes).is_ok());
                let seconds = audio.frames as f64 / f64::from(audio.sample_rate);
                if seconds <= 0.5 {
                    let converted = to_carrier_format(bytes).unwrap();
                    prop_assert!(converted.bytes.len() <= MAX_BYTES);
                    if !converted.unchanged {
                        // A conversion of too little to hold one output sample has nothing to play.
                        match inspect(&converted.bytes) {
                            Ok(again) => prop_assert!(again.problems.is_empty(), "{:?}", again.problems),
                            Err(err) => prop_assert!(matches!(err, ToneError::Truncated(_)), "{}", err),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(256))]

        /// write_alaw → read: the codes come back as their decoded samples, the file is in the
        /// carrier's format, and converting it keeps it byte for byte.
        #[test]
        fn alaw_written_is_read_back(codes in proptest::collection::vec(any::<u8>(), 1..2000)) {
            let bytes = write_alaw(&codes);
            let audio = read(&bytes).unwrap();
            prop_assert!(audio.is_alaw);
            prop_assert_eq!((audio.sample_rate, audio.channels, audio.frames), (8000, 1, codes.len()));
            let decoded: Vec<f32> = codes.iter().map(|code| alaw::decode(*code)).collect();
            prop_assert_eq!(audio.samples, decoded);
            prop_assert!(inspect(&bytes).unwrap().problems.is_empty());
            let converted = to_carrier_format(&bytes).unwrap();
            prop_assert!(converted.unchanged && converted.bytes == bytes);
        }

        /// A PCM or float WAV is read as written, within one quantisation step.
        #[test]
        fn pcm_written_is_read_back((bytes, spec, samples) in pcm_wav()) {
            let audio = read(&bytes).unwrap();
            prop_assert!(!audio.is_alaw);
            prop_assert_eq!((audio.sample_rate, audio.channels, audio.bits_per_sample), (spec.sample_rate, spec.channels, spec.bits_per_sample));
            prop_assert_eq!(audio.samples.len(), samples.len());
            let step = 2.0 / 2f32.powi(i32::from(spec.bits_per_sample) - 1);
            for (read, written) in audio.samples.iter().zip(&samples) {
                prop_assert!((read - written).abs() <= step, "{} read as {}", written, read);
            }
        }

        /// A WAV cut short anywhere is refused, or (when only the pad byte after an odd-sized
        /// data chunk is gone) read exactly as the whole file: a cut never yields other audio.
        #[test]
        fn a_cut_wav_is_refused_or_read_whole(bytes in any_wav(), at: prop::sample::Index) {
            let whole = read(&bytes).unwrap();
            let cut = &bytes[..at.index(bytes.len())];
            match read(cut) {
                Err(err) => prop_assert!(!err.to_string().is_empty()),
                Ok(audio) => {
                    prop_assert_eq!(cut.len(), bytes.len() - 1, "a cut at {} of {} was read", cut.len(), bytes.len());
                    prop_assert_eq!(audio.samples, whole.samples);
                }
            }
        }

        /// Damaged bytes anywhere in a WAV: read, inspected and converted, or refused; never a
        /// panic, and whatever is read is playable.
        #[test]
        fn a_damaged_wav_is_read_or_refused(
            bytes in any_wav(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut bytes = bytes;
            for (at, value) in flips {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            check_any(&bytes)?;
        }

        /// RIFF files made of arbitrary chunks (right and wrong sizes, fmt fields of any value):
        /// read or refused, never a panic.
        #[test]
        fn arbitrary_chunks_are_read_or_refused(
            chunks in proptest::collection::vec(
                (
                    prop_oneof![Just(*b"fmt "), Just(*b"data"), Just(*b"fact"), any::<[u8; 4]>()],
                    proptest::collection::vec(any::<u8>(), 0..64),
                    proptest::option::weighted(0.2, any::<u32>()),
                ),
                0..5,
            ),
            tag in prop_oneof![Just(1u16), Just(3), Just(6), Just(0xfffe), any::<u16>()],
        ) {
            let mut bytes = b"RIFF\0\0\0\0WAVE".to_vec();
            for (id, mut body, size) in chunks {
                if &id == b"fmt " && body.len() >= 2 {
                    body[..2].copy_from_slice(&tag.to_le_bytes());
                }
                bytes.extend_from_slice(&id);
                bytes.extend_from_slice(&size.unwrap_or(body.len() as u32).to_le_bytes());
                bytes.extend_from_slice(&body);
            }
            check_any(&bytes)?;
        }
    }

    #[test]
    fn every_alaw_code_encodes_back_to_itself() {
        for code in 0..=255u8 {
            assert_eq!(alaw::encode(alaw::decode(code)), code, "code {code:#04x}");
        }
    }
}
