//! A JSON writer whose output is byte-identical to Python's `json.dumps`
//! with default arguments: separators `", "` and `": "`, non-ASCII (and
//! DEL and control characters) escaped as `\uXXXX` with surrogate pairs for
//! characters outside the BMP, and floats written as Python's `repr`.
//!
//! pynenc writes every JSON column with `json.dumps`, and databases written
//! here must read back in pynenc byte for byte, so serde_json's compact
//! formatter (which writes `,`/`:` and raw UTF-8) cannot be used.

use serde_json::{Map, Number, Value};

/// Appends `s` as a JSON string literal, escaped as Python does.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_u_escape(out, *unit);
                }
            }
        }
    }
    out.push('"');
}

fn push_u_escape(out: &mut String, unit: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\u");
    for shift in [12u16, 8, 4, 0] {
        out.push(char::from(HEX[usize::from((unit >> shift) & 0xf)]));
    }
}

/// Appends an optional string: the literal, or `null`.
pub fn write_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.push_str("null"),
    }
}

/// Appends a float as Python's `repr(float)` (shortest round-trip digits;
/// scientific notation when the decimal exponent is < -4 or >= 16).
/// Non-finite values are written as Python's `json.dumps` writes them.
pub fn write_f64(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7", "1e16".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Position of the decimal point relative to the start of `digits`.
    let decpt = exp + 1;
    out.push_str(sign);
    if !(-4 < decpt && decpt <= 16) {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..(-decpt) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let decpt = decpt as usize;
        if digits.len() <= decpt {
            out.push_str(&digits);
            for _ in digits.len()..decpt {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt]);
            out.push('.');
            out.push_str(&digits[decpt..]);
        }
    }
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        write_f64(out, f);
    }
}

/// Appends any JSON value, objects in their stored key order.
pub fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

/// Appends a JSON object, in its key order.
pub fn write_map(out: &mut String, map: &Map<String, Value>) {
    write_object(out, map.iter().map(|(k, v)| (k.as_str(), v)), write_value);
}

/// Appends a JSON object of `pairs`, writing each value with `write`.
pub fn write_object<'a, V: ?Sized + 'a>(
    out: &mut String,
    pairs: impl IntoIterator<Item = (&'a str, &'a V)>,
    mut write: impl FnMut(&mut String, &V),
) {
    out.push('{');
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(out, k);
        out.push_str(": ");
        write(out, v);
    }
    out.push('}');
}

/// `json.dumps(value)` for any JSON value.
#[must_use]
pub fn dumps(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(x: f64) -> String {
        let mut s = String::new();
        write_f64(&mut s, x);
        s
    }

    #[test]
    fn floats_match_python_repr() {
        // Expected values are Python 3.11's `repr(x)`.
        let cases = [
            (42.5, "42.5"),
            (0.02, "0.02"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e100, "1e+100"),
            (-2.5e-300, "-2.5e-300"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1736942400.100001, "1736942400.100001"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(f(x), want, "repr of {x:e}");
        }
    }

    #[test]
    fn strings_escape_like_python() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\n\t\u{1}\u{7f}é😀/");
        assert_eq!(s, r#""a\"b\\c\n\t\u0001\u007f\u00e9\ud83d\ude00/""#);
    }

    #[test]
    fn values_use_python_separators_and_keep_order() {
        let v: Value =
            serde_json::from_str(r#"{"z": 1, "a": [true, null, 2.50, -3], "m": {"k": "v"}}"#)
                .unwrap();
        assert_eq!(
            dumps(&v),
            r#"{"z": 1, "a": [true, null, 2.5, -3], "m": {"k": "v"}}"#
        );
    }
}
