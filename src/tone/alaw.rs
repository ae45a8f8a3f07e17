//! G.711 A-law: 13-bit linear PCM to 8-bit codes and back (ITU-T G.711, the carrier's format).

/// Encodes one sample in -1.0..=1.0 (clamped).
pub fn encode(sample: f32) -> u8 {
    // 13-bit signed linear range, as G.711 defines it.
    let linear = (sample.clamp(-1.0, 1.0) * 4095.0).round() as i32;
    let (sign, magnitude) = if linear >= 0 { (0x80u8, linear) } else { (0x00u8, -linear - 1) };
    let magnitude = magnitude.clamp(0, 4095) as u32;
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        // The segment is the position of the highest set bit above bit 4.
        let segment = (31 - magnitude.leading_zeros()) - 4;
        let mantissa = (magnitude >> segment) & 0x0F;
        ((segment << 4) as u8) | mantissa as u8
    };
    (code | sign) ^ 0x55
}

/// Decodes one code to a sample in -1.0..=1.0.
pub fn decode(code: u8) -> f32 {
    let code = code ^ 0x55;
    let segment = u32::from((code >> 4) & 0x07);
    let mantissa = u32::from(code & 0x0F);
    let magnitude = if segment == 0 { (mantissa << 1) + 1 } else { ((mantissa << 1) + 33) << (segment - 1) };
    let value = magnitude as f32 / 4095.0;
    if code & 0x80 != 0 {
        value
    } else {
        -value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_within_the_quantisation_step() {
        for i in -1000..=1000 {
            let sample = i as f32 / 1000.0;
            let back = decode(encode(sample));
            // A-law steps grow with the magnitude: at most 1/32 of it (segment 7), or 2/4095 near 0.
            let step = (sample.abs() / 16.0).max(2.0 / 4095.0);
            assert!((back - sample).abs() <= step, "{sample} came back as {back}");
        }
    }

    #[test]
    fn silence_is_the_standard_code() {
        assert_eq!(encode(0.0), 0xD5);
    }
}
