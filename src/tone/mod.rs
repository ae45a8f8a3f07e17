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

/// The longest tone `make` writes: what fits the carrier's 2 MB at 8000 bytes a second.
pub const MAX_MADE_SECS: f64 = (MAX_BYTES / 8000) as f64;

/// A sine tone of `hz` for `seconds`, already in the carrier's format (A-law, 8000 Hz, mono): a
/// valid tone to try uploads, reviews and calls with, without an audio tool. The amplitude is
/// half of full scale, faded in and out over 10 ms so it starts and stops without a click.
pub fn make(hz: f64, seconds: f64) -> Result<Vec<u8>, String> {
    if !(20.0..=3_400.0).contains(&hz) {
        return Err(format!("{hz} Hz is outside the telephone band; give 20 to 3400 Hz"));
    }
    if !(seconds > 0.0 && seconds <= MAX_MADE_SECS) {
        return Err(format!("{seconds} s must be more than 0 and at most {MAX_MADE_SECS} s (2 MB of A-law)"));
    }
    let rate = f64::from(convert::RATE);
    let frames = ((seconds * rate).round() as usize).max(1);
    let fade = (0.010 * rate) as usize;
    let codes = (0..frames)
        .map(|n| {
            // The distance to the nearer end, in frames (n < frames).
            let envelope = (n.min(frames - 1 - n) as f64 / fade as f64).min(1.0);
            let sample = 0.5 * envelope * (std::f64::consts::TAU * hz * n as f64 / rate).sin();
            alaw::encode(sample as f32)
        })
        .collect::<Vec<u8>>();
    Ok(wav::write_alaw(&codes))
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

#[cfg(test)]
mod tests {
    use super::{inspect, make};

    #[test]
    fn a_made_tone_is_in_the_carriers_format_and_as_long_as_asked() {
        let inspection = inspect(&make(440.0, 2.0).unwrap()).unwrap();
        assert!(inspection.problems.is_empty(), "{inspection}");
        assert!((inspection.seconds - 2.0).abs() < 0.001, "{inspection}");
        assert!(make(440.0, 0.00001).is_ok(), "a tone of one sample is still a tone");
        assert!(make(10.0, 1.0).unwrap_err().contains("telephone band"));
        assert!(make(440.0, 0.0).is_err() && make(440.0, 300.0).is_err() && make(440.0, f64::NAN).is_err());
    }
}
