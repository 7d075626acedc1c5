//! Exact decimal numbers as people type them ("172.5", "-3", "0.25").
//!
//! Values are parsed exactly, never through floating point, so that "more decimals than the
//! study allows" is a decision on the digits the patient typed.

use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ValueError;

/// The most fractional digits a [`Decimal`] may carry.
pub const MAX_SCALE: u8 = 9;
/// The largest absolute mantissa accepted (keeps every product of study arithmetic in `i128`).
const MAX_MANTISSA: i64 = 1_000_000_000_000_000; // 10^15

/// An exact decimal `mantissa × 10^-scale`.
///
/// `Debug` is opaque because a `Decimal` is usually a patient's value; `Display` prints it and is
/// only used for public numbers (study bounds).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    mantissa: i64,
    scale: u8,
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Decimal(..)")
    }
}

impl Decimal {
    /// Builds `mantissa × 10^-scale`.
    pub fn new(mantissa: i64, scale: u8) -> Result<Decimal, ValueError> {
        if scale > MAX_SCALE || mantissa.unsigned_abs() > MAX_MANTISSA as u64 {
            return Err(ValueError::TooLarge);
        }
        Ok(Decimal { mantissa, scale })
    }

    /// A whole number.
    pub fn from_int(x: i64) -> Result<Decimal, ValueError> {
        Decimal::new(x, 0)
    }

    /// This number as an integer count of `10^-decimals` units, or
    /// [`ValueError::TooManyDecimals`] if it has non-zero digits beyond `decimals`.
    pub fn to_scaled(self, decimals: u8) -> Result<i64, ValueError> {
        if decimals >= self.scale {
            let factor = 10i64.pow(u32::from(decimals - self.scale));
            self.mantissa
                .checked_mul(factor)
                .ok_or(ValueError::TooLarge)
        } else {
            let factor = 10i64.pow(u32::from(self.scale - decimals));
            if self.mantissa % factor != 0 {
                return Err(ValueError::TooManyDecimals { allowed: decimals });
            }
            Ok(self.mantissa / factor)
        }
    }

    /// The nearest `f64`.
    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / libm::pow(10.0, f64::from(self.scale))
    }
}

impl FromStr for Decimal {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Decimal, ValueError> {
        let s = s.trim();
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int_part, frac_part) = match digits.split_once('.') {
            Some((i, f)) => (i, f),
            None => (digits, ""),
        };
        let well_formed = !(int_part.is_empty() && frac_part.is_empty())
            && int_part.bytes().all(|b| b.is_ascii_digit())
            && frac_part.bytes().all(|b| b.is_ascii_digit())
            && !(digits.contains('.') && frac_part.is_empty());
        if !well_formed || digits.len() > 40 {
            return Err(ValueError::Malformed);
        }
        // Trailing zeros after the point carry no information; drop them so "172.50" has scale 1.
        let frac_part = frac_part.trim_end_matches('0');
        if frac_part.len() > usize::from(MAX_SCALE) {
            return Err(ValueError::TooManyDecimals { allowed: MAX_SCALE });
        }
        let mut mantissa: i64 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or(ValueError::TooLarge)?;
        }
        if negative {
            mantissa = -mantissa;
        }
        Decimal::new(mantissa, frac_part.len() as u8)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let abs = self.mantissa.unsigned_abs();
        if self.scale == 0 {
            return write!(f, "{sign}{abs}");
        }
        let factor = 10u64.pow(u32::from(self.scale));
        write!(
            f,
            "{sign}{}.{:0width$}",
            abs / factor,
            abs % factor,
            width = usize::from(self.scale)
        )
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("not a decimal number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    use proptest::prelude::*;

    #[test]
    fn parses_what_people_type() {
        let d: Decimal = "172.5".parse().unwrap();
        assert_eq!(d.to_scaled(1), Ok(1725));
        assert_eq!(d.to_scaled(2), Ok(17250));
        assert_eq!(
            d.to_scaled(0),
            Err(ValueError::TooManyDecimals { allowed: 0 })
        );
        assert_eq!("172.50".parse::<Decimal>().unwrap().to_scaled(1), Ok(1725));
        assert_eq!("-3".parse::<Decimal>().unwrap().to_scaled(0), Ok(-3));
        assert_eq!(".5".parse::<Decimal>().unwrap().to_scaled(1), Ok(5));
        assert_eq!("  42 ".parse::<Decimal>().unwrap().to_string(), "42");
        assert_eq!("-0.25".parse::<Decimal>().unwrap().to_string(), "-0.25");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "-", ".", "1.", "1e3", "12,5", "1.2.3", "--1", "abc", "0x10", "NaN", "inf", "1 2",
        ] {
            assert_eq!(
                bad.parse::<Decimal>(),
                Err(ValueError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            "99999999999999999999".parse::<Decimal>(),
            Err(ValueError::TooLarge)
        );
        assert!(matches!(
            "0.0000000001".parse::<Decimal>(),
            Err(ValueError::TooManyDecimals { .. })
        ));
        assert_eq!(
            format!("{:?}", "172.5".parse::<Decimal>().unwrap()),
            "Decimal(..)"
        );
    }

    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    proptest! {
        #[test]
        fn display_round_trips(m in -MAX_MANTISSA..MAX_MANTISSA, scale in 0u8..=MAX_SCALE) {
            let d = Decimal::new(m, scale).unwrap();
            let back: Decimal = d.to_string().parse().unwrap();
            prop_assert_eq!(back.to_scaled(scale).unwrap(), m);
        }
    }
}
