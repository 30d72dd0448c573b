//! The time zones a phone number may be in, from its E.164 prefix alone.
//!
//! The send gate must not wake people up, and for most subscribers the number
//! is all it knows. This module answers the *candidates*: every IANA zone the
//! number's prefix is used in. The gate then sends only when its window holds
//! in all of them at once, so several candidates narrow the window, never
//! widen it.
//!
//! ```
//! use keyward::core::zones::candidate_zones;
//!
//! assert_eq!(candidate_zones("+12125550100"), &[chrono_tz::America::New_York]);
//! assert_eq!(candidate_zones("62811234567").len(), 2); // Jakarta & Makassar
//! assert!(candidate_zones("+999").is_empty());
//! ```
//!
//! Rules:
//! - the data is libphonenumber's time-zone map (`data/tz_map.txt`, Apache
//!   License 2.0, see `data/tz_map.LICENSE` and the file's own header),
//!   embedded in the binary and parsed once, on first use;
//! - the longest prefix of the number that the map lists wins; a country code
//!   alone lists every zone of that country;
//! - the number is E.164 digits, with or without a leading `+`; anything else
//!   (spaces, dashes, letters, an empty string) is not a number we can place
//!   and gets no zones, like an unknown prefix;
//! - a zone name that chrono-tz does not know is left out, not a panic (a
//!   unit test checks that today every name in the file is known);
//! - a range listed in [`NOT_REGIONAL`] is not taken from its own line but
//!   from its country's: see there why.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono_tz::Tz;

/// libphonenumber's `resources/timezones/map_data.txt`: `PREFIX|Zone&Zone…`.
const MAP_DATA: &str = include_str!("data/tz_map.txt");

/// Prefixes whose own line in the map is ignored, so that their numbers fall
/// back to the country's full list.
///
/// `79` is every Russian mobile number. Russian mobile numbers are national,
/// not regional: a number keeps working wherever its owner lives, from
/// Kaliningrad to Kamchatka. The map nonetheless pins `79` to Europe/Moscow
/// (it was generated from where such numbers were seen in 2018), and trusting
/// it would send a Moscow 16:00 message at 23:00 in Vladivostok.
/// libphonenumber's own lookup does not use such lines for mobile numbers of
/// a country whose mobiles are not geographic: it answers the country's list,
/// which is what this gives.
///
/// Indonesian mobiles are left to their lines: the map's `62811`-style lines
/// already list the several zones seen for them.
pub const NOT_REGIONAL: &[&str] = &["79"];

struct ZoneMap {
    by_prefix: HashMap<Box<str>, Box<[Tz]>>,
    longest: usize,
}

static MAP: LazyLock<ZoneMap> = LazyLock::new(|| parse(MAP_DATA));

fn parse(data: &str) -> ZoneMap {
    let mut by_prefix = HashMap::new();
    let mut longest = 0;
    for line in data.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((prefix, names)) = line.split_once('|') else {
            continue;
        };
        if NOT_REGIONAL.contains(&prefix) {
            continue;
        }
        let zones: Box<[Tz]> = names.split('&').filter_map(|n| n.parse().ok()).collect();
        longest = longest.max(prefix.len());
        by_prefix.insert(prefix.into(), zones);
    }
    ZoneMap { by_prefix, longest }
}

/// The candidate zones of an E.164 number (`"+6281…"` or `"6281…"`): those of
/// the longest prefix the map lists, or none for a prefix it does not list or
/// text that is not E.164 digits.
pub fn candidate_zones(e164_digits_or_plus: &str) -> &'static [Tz] {
    let digits = e164_digits_or_plus
        .strip_prefix('+')
        .unwrap_or(e164_digits_or_plus);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return &[];
    }
    let map: &'static ZoneMap = &MAP;
    (1..=digits.len().min(map.longest))
        .rev()
        .find_map(|n| map.by_prefix.get(&digits[..n]))
        .map_or(&[], |zones| zones)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Asia::{Jakarta, Jayapura, Makassar};
    use chrono_tz::Europe::Moscow;

    #[test]
    fn every_zone_name_in_the_map_is_known_to_chrono_tz() {
        let unknown: Vec<&str> = MAP_DATA
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('|'))
            .flat_map(|(_, names)| names.split('&'))
            .filter(|name| name.parse::<Tz>().is_err())
            .collect();
        assert!(
            unknown.is_empty(),
            "chrono-tz does not know {unknown:?}: those numbers lose a candidate zone"
        );
        assert!(MAP.by_prefix.len() > 3000, "the whole file was read");
    }

    #[test]
    fn a_zone_name_chrono_tz_does_not_know_is_left_out_without_a_panic() {
        let map = parse("# header\n62|Asia/Jakarta&Mars/Olympus_Mons\n\nnot a line\n");
        assert_eq!(&*map.by_prefix["62"], &[Jakarta]);
        assert_eq!(map.by_prefix.len(), 1);
    }

    #[test]
    fn a_jakarta_landline_is_in_jakarta() {
        assert_eq!(candidate_zones("+622150001234"), &[Jakarta]);
        assert_eq!(candidate_zones("622150001234"), &[Jakarta]);
    }

    #[test]
    fn an_indonesian_0811_mobile_may_be_in_jakarta_or_makassar() {
        assert_eq!(candidate_zones("+62811234567"), &[Jakarta, Makassar]);
    }

    #[test]
    fn indonesia_as_a_whole_spans_wib_wita_and_wit() {
        assert_eq!(candidate_zones("+62"), &[Jakarta, Jayapura, Makassar]);
    }

    #[test]
    fn a_new_york_number_is_in_new_york() {
        assert_eq!(candidate_zones("+12125550100"), &[New_York]);
    }

    #[test]
    fn a_russian_mobile_may_be_in_any_zone_of_plus_7() {
        // The file says 79|Europe/Moscow; NOT_REGIONAL overrides it on purpose.
        assert!(MAP_DATA.lines().any(|l| l == "79|Europe/Moscow"));
        let zones = candidate_zones("+79161234567");
        assert_eq!(zones, candidate_zones("+7"));
        assert_eq!(zones.len(), 16);
        assert!(zones.contains(&Moscow));
        assert!(zones.contains(&chrono_tz::Asia::Vladivostok));
        assert!(zones.contains(&chrono_tz::Asia::Kamchatka));
    }

    #[test]
    fn a_russian_landline_keeps_its_region() {
        assert_eq!(
            candidate_zones("+74232123456"),
            &[chrono_tz::Asia::Vladivostok]
        );
    }

    #[test]
    fn an_unknown_prefix_or_a_non_number_has_no_zones() {
        for text in ["", "+", "+999123", "+62 21 5000", "62-21", "abc", "++62"] {
            assert!(candidate_zones(text).is_empty(), "{text:?}");
        }
    }
}
