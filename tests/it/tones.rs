//! Tone files: generated inputs of every common shape are converted to A-law 8000 Hz mono; an
//! already-correct file is kept byte for byte; a 1 kHz sine survives within A-law's quantisation;
//! a 6 kHz tone is filtered out rather than folded to 2 kHz; bad inputs are refused by name.

use std::f32::consts::PI;
use std::io::Cursor;

use privnum::tone::{self, alaw, wav, ToneError};

/// A WAV of `seconds` of a `hz` sine at amplitude 0.5 on every channel.
fn sine_wav(spec: hound::WavSpec, hz: f32, seconds: f32) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut bytes, spec).unwrap();
    let frames = (spec.sample_rate as f32 * seconds) as usize;
    for n in 0..frames {
        let value = 0.5 * (2.0 * PI * hz * n as f32 / spec.sample_rate as f32).sin();
        for _ in 0..spec.channels {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => writer.write_sample(value).unwrap(),
                (hound::SampleFormat::Int, 8) => writer.write_sample((value * 127.0) as i8).unwrap(),
                (hound::SampleFormat::Int, 16) => writer.write_sample((value * 32767.0) as i16).unwrap(),
                (hound::SampleFormat::Int, bits) => {
                    writer.write_sample((value * (2f32.powi(bits as i32 - 1) - 1.0)) as i32).unwrap()
                }
            }
        }
    }
    writer.finalize().unwrap();
    bytes.into_inner()
}

fn spec(channels: u16, rate: u32, bits: u16, float: bool) -> hound::WavSpec {
    let sample_format = if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int };
    hound::WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format }
}

/// The decoded samples of a converted tone, checking its format on the way.
fn carrier_samples(bytes: &[u8]) -> Vec<f32> {
    let inspection = tone::inspect(bytes).unwrap();
    assert!(inspection.problems.is_empty(), "{inspection}");
    wav::read(bytes).unwrap().samples
}

fn rms(samples: &[f32]) -> f32 {
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32).sqrt()
}

#[test]
fn every_common_shape_converts_to_the_carrier_format() {
    for (name, spec) in [
        ("16-bit 44.1 kHz stereo", spec(2, 44_100, 16, false)),
        ("24-bit 48 kHz mono", spec(1, 48_000, 24, false)),
        ("float 22.05 kHz", spec(1, 22_050, 32, true)),
        ("8-bit 11.025 kHz", spec(1, 11_025, 8, false)),
    ] {
        let input = sine_wav(spec, 440.0, 0.5);
        let before = tone::inspect(&input).unwrap();
        assert!(!before.problems.is_empty(), "{name} is not in the carrier format");
        let converted = tone::to_carrier_format(&input).unwrap();
        assert!(!converted.unchanged, "{name}");
        let samples = carrier_samples(&converted.bytes);
        assert!((samples.len() as i64 - 4000).abs() <= 1, "{name}: 0.5 s at 8000 Hz, got {}", samples.len());
        let level = rms(&samples[200..3800]);
        assert!((level - 0.5 / 2f32.sqrt()).abs() < 0.03, "{name}: a 440 Hz sine keeps its level, got RMS {level}");
    }
}

#[test]
fn a_file_already_in_the_carrier_format_is_kept_byte_for_byte() {
    let codes: Vec<u8> = (0..8000).map(|n| alaw::encode(0.3 * (n as f32 / 10.0).sin())).collect();
    let input = wav::write_alaw(&codes);
    let converted = tone::to_carrier_format(&input).unwrap();
    assert!(converted.unchanged);
    assert_eq!(converted.bytes, input);
}

#[test]
fn a_1khz_sine_decodes_back_within_the_quantisation_error() {
    let input = sine_wav(spec(1, 48_000, 16, false), 1000.0, 0.5);
    let samples = carrier_samples(&tone::to_carrier_format(&input).unwrap().bytes);
    // Away from the ends (where the filter sees silence), every sample is the ideal one within
    // A-law's step at this level (about 1/64 of full scale) plus the filter's passband ripple.
    for (n, sample) in samples.iter().enumerate().skip(100).take(3800) {
        let ideal = 0.5 * (2.0 * PI * 1000.0 * n as f32 / 8000.0).sin();
        assert!((sample - ideal).abs() < 0.02, "sample {n}: {sample} vs {ideal}");
    }
}

#[test]
fn a_6khz_tone_is_filtered_out_not_folded_to_2khz() {
    let input = sine_wav(spec(1, 44_100, 16, false), 6000.0, 0.5);
    let samples = carrier_samples(&tone::to_carrier_format(&input).unwrap().bytes);
    let middle = &samples[200..3800];
    // Naive decimation would leave a 2 kHz alias at the input's level (RMS 0.35).
    assert!(rms(middle) < 0.01, "RMS {} left of a tone above 4 kHz", rms(middle));
    // And specifically no 2 kHz component.
    let (mut re, mut im) = (0.0f32, 0.0f32);
    for (n, s) in middle.iter().enumerate() {
        let phase = 2.0 * PI * 2000.0 * n as f32 / 8000.0;
        re += s * phase.cos();
        im += s * phase.sin();
    }
    let amplitude = 2.0 * (re * re + im * im).sqrt() / middle.len() as f32;
    assert!(amplitude < 0.005, "2 kHz alias amplitude {amplitude}");
}

#[test]
fn bad_inputs_are_refused_with_what_is_wrong() {
    assert!(matches!(tone::inspect(b"ID3 not a wav at all"), Err(ToneError::NotWav(_))));
    let whole = sine_wav(spec(1, 8000, 16, false), 440.0, 0.1);
    let cut = &whole[..whole.len() / 2];
    let err = tone::to_carrier_format(cut).unwrap_err();
    assert!(matches!(err, ToneError::Truncated(_)), "{err}");
    // 300 s at 8000 Hz is 2.4 MB of A-law: over the 2 MB limit after conversion.
    let long = sine_wav(spec(1, 8000, 8, false), 440.0, 300.0);
    let err = tone::to_carrier_format(&long).unwrap_err();
    assert!(matches!(err, ToneError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("2097152"), "{err}");
}
