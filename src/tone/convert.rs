//! From any PCM or float WAV to the carrier's format: mono, 8000 Hz, G.711 A-law.
//!
//! Resampling is band-limited: every output sample is a Blackman-windowed sinc sum of the input,
//! with the cutoff below the output's Nyquist frequency (4 kHz), so content above it is filtered
//! out instead of folding back into the band as an alias.

use std::f64::consts::PI;

/// The output rate.
pub const RATE: u32 = 8000;

/// The passband edge as a fraction of the output's Nyquist frequency: 3.6 kHz of 4 kHz, the
/// telephone band with room for the filter's roll-off.
const CUTOFF: f64 = 0.9;

/// Zero crossings of the sinc on each side: longer is sharper and slower.
const ZERO_CROSSINGS: f64 = 16.0;

/// Mixes interleaved channels to one.
pub fn downmix(samples: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return samples.to_vec();
    }
    samples.chunks(channels).map(|frame| frame.iter().sum::<f32>() / frame.len() as f32).collect()
}

fn blackman(x: f64) -> f64 {
    // x in -1..=1
    0.42 + 0.5 * (PI * x).cos() + 0.08 * (2.0 * PI * x).cos()
}

/// Resamples mono `input` at `from` Hz to [`RATE`], low-passed at `CUTOFF` (0.9) × 4 kHz.
pub fn resample(input: &[f32], from: u32) -> Vec<f32> {
    if input.is_empty() || from == 0 {
        return Vec::new();
    }
    let ratio = f64::from(from) / f64::from(RATE);
    // Cutoff in cycles per input sample: the lower of the two Nyquists, times CUTOFF.
    let cutoff = CUTOFF * 0.5 * (1.0 / ratio).min(1.0);
    let half_width = (ZERO_CROSSINGS / (2.0 * cutoff)).ceil();
    let out_len = ((input.len() as f64) / ratio).floor() as usize;
    let mut output = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let center = n as f64 * ratio;
        let first = (center - half_width).ceil().max(0.0) as usize;
        let last = ((center + half_width).floor() as usize).min(input.len() - 1);
        let mut sum = 0.0;
        for (k, sample) in input.iter().enumerate().take(last + 1).skip(first) {
            let t = k as f64 - center;
            let sinc = if t == 0.0 { 2.0 * cutoff } else { (2.0 * PI * cutoff * t).sin() / (PI * t) };
            sum += f64::from(*sample) * sinc * blackman(t / (half_width + 1.0));
        }
        output.push(sum as f32);
    }
    output
}
