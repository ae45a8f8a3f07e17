//! Hint tones: checking a WAV against the carrier's format (A-law, 8000 Hz, 64 kbit/s, mono, at
//! most 2 MB; README, Tones) and converting anything else into it.
//!
//! Reading uses `hound` for PCM and float WAVs of any rate, width and channel count. `hound`
//! cannot read or write A-law (format tag 6), so this module parses and writes those small files
//! itself (`wav.rs`). A file already in the carrier format is kept byte for byte.

pub mod alaw;
pub mod convert;
pub mod wav;

use std::fmt;

/// The largest tone the carrier takes.
pub const MAX_BYTES: usize = 2 * 1024 * 1024;

/// Why a file cannot be a tone. Each says which rule it broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToneError {
    #[error("not a WAV file: {0}")]
    NotWav(String),
    #[error("the WAV file is truncated or damaged: {0}")]
    Truncated(String),
    #[error("the WAV's format is not supported: {0}")]
    Unsupported(String),
    #[error("{bytes} bytes after conversion to A-law 8000 Hz mono, over the carrier's {MAX_BYTES}-byte limit ({seconds:.1} s of audio; at most {max_seconds:.1} s fit)")]
    TooLarge { bytes: usize, seconds: f64, max_seconds: f64 },
}

/// What a WAV is, as `privnum tone inspect` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub format: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    pub seconds: f64,
    pub bytes: usize,
    /// Why it is not in the carrier's format; empty when it is.
    pub problems: Vec<String>,
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "format:      {}", self.format)?;
        writeln!(f, "sample rate: {} Hz", self.sample_rate)?;
        writeln!(f, "channels:    {}", self.channels)?;
        writeln!(f, "bits:        {}", self.bits_per_sample)?;
        writeln!(f, "duration:    {:.2} s", self.seconds)?;
        writeln!(f, "size:        {} bytes", self.bytes)?;
        if self.problems.is_empty() {
            write!(f, "carrier format: yes (A-law, 8000 Hz, 64 kbit/s, mono, at most 2 MB)")
        } else {
            write!(f, "carrier format: no\n  - {}", self.problems.join("\n  - "))
        }
    }
}

/// Describes a WAV and says why it does not meet the carrier's format, if it does not.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, ToneError> {
    let audio = wav::read(bytes)?;
    let mut problems = Vec::new();
    if !audio.is_alaw {
        problems.push(format!("encoded as {}, not A-law", audio.format));
    }
    if audio.sample_rate != convert::RATE {
        problems.push(format!("{} Hz, not 8000 Hz", audio.sample_rate));
    }
    if audio.channels != 1 {
        problems.push(format!("{} channels, not mono", audio.channels));
    }
    if bytes.len() > MAX_BYTES {
        problems.push(format!("{} bytes, over {MAX_BYTES}", bytes.len()));
    }
    Ok(Inspection {
        format: audio.format.clone(),
        sample_rate: audio.sample_rate,
        channels: audio.channels,
        bits_per_sample: audio.bits_per_sample,
        seconds: audio.frames as f64 / f64::from(audio.sample_rate.max(1)),
        bytes: bytes.len(),
        problems,
    })
}

/// A tone in the carrier's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub bytes: Vec<u8>,
    /// The input already met the format and is returned unchanged.
    pub unchanged: bool,
}

/// Converts a WAV to A-law, 8000 Hz, mono; a file already in that format comes back unchanged.
pub fn to_carrier_format(bytes: &[u8]) -> Result<Converted, ToneError> {
    let inspection = inspect(bytes)?;
    if inspection.problems.is_empty() {
        return Ok(Converted { bytes: bytes.to_vec(), unchanged: true });
    }
    let audio = wav::read(bytes)?;
    // Refuse before the work when the result cannot fit (each output second is 8000 bytes).
    let seconds = audio.frames as f64 / f64::from(audio.sample_rate.max(1));
    let estimated = (seconds * f64::from(convert::RATE)) as usize + wav::ALAW_HEADER_BYTES;
    let too_large = |bytes: usize| ToneError::TooLarge {
        bytes,
        seconds,
        max_seconds: (MAX_BYTES - wav::ALAW_HEADER_BYTES) as f64 / f64::from(convert::RATE),
    };
    if estimated > MAX_BYTES + usize::try_from(convert::RATE).unwrap_or(0) {
        return Err(too_large(estimated));
    }
    let mono = convert::downmix(&audio.samples, usize::from(audio.channels));
    let resampled = if audio.sample_rate == convert::RATE { mono } else { convert::resample(&mono, audio.sample_rate) };
    let codes: Vec<u8> = resampled.iter().map(|sample| alaw::encode(*sample)).collect();
    let out = wav::write_alaw(&codes);
    if out.len() > MAX_BYTES {
        return Err(too_large(out.len()));
    }
    Ok(Converted { bytes: out, unchanged: false })
}
