//! ITU-T E.164 country calling codes.
//!
//! Country codes are a prefix code: no assigned code is a prefix of another, so the code
//! of an international number is found by trying its first one, two and three digits.
//! The table lists the codes assigned by the ITU (Recommendation E.164 Annex, "List of
//! ITU-T Recommendation E.164 assigned country codes"), including the non-geographic
//! codes for global services (800, 808, 870, 881-883, 888, 979, 991).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An assigned E.164 country calling code, such as 1, 44 or 353.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CountryCode(u16);

impl CountryCode {
    /// The country code that starts `digits` (a string of ASCII digits), if one is assigned.
    pub fn of(digits: &str) -> Option<CountryCode> {
        if digits.starts_with('0') {
            return None;
        }
        (1..=3)
            .filter_map(|len| digits.get(..len))
            .filter(|head| head.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|head| head.parse::<u16>().ok())
            .find(|&code| name_of(code).is_some())
            .map(CountryCode)
    }

    /// The code as a number.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The number of digits of the code (1, 2 or 3).
    pub fn digit_count(self) -> usize {
        match self.0 {
            0..=9 => 1,
            10..=99 => 2,
            _ => 3,
        }
    }

    /// The country, territory or global service the ITU assigned the code to.
    pub fn name(self) -> &'static str {
        name_of(self.0).unwrap_or("unassigned")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn name_of(code: u16) -> Option<&'static str> {
    ASSIGNED
        .binary_search_by_key(&code, |&(c, _)| c)
        .ok()
        .map(|index| ASSIGNED[index].1)
}

/// Assigned codes, sorted by code for binary search.
const ASSIGNED: &[(u16, &str)] = &[
    (1, "North American Numbering Plan"),
    (7, "Russia / Kazakhstan"),
    (20, "Egypt"),
    (27, "South Africa"),
    (30, "Greece"),
    (31, "Netherlands"),
    (32, "Belgium"),
    (33, "France"),
    (34, "Spain"),
    (36, "Hungary"),
    (39, "Italy"),
    (40, "Romania"),
    (41, "Switzerland"),
    (43, "Austria"),
    (44, "United Kingdom"),
    (45, "Denmark"),
    (46, "Sweden"),
    (47, "Norway"),
    (48, "Poland"),
    (49, "Germany"),
    (51, "Peru"),
    (52, "Mexico"),
    (53, "Cuba"),
    (54, "Argentina"),
    (55, "Brazil"),
    (56, "Chile"),
    (57, "Colombia"),
    (58, "Venezuela"),
    (60, "Malaysia"),
    (61, "Australia"),
    (62, "Indonesia"),
    (63, "Philippines"),
    (64, "New Zealand"),
    (65, "Singapore"),
    (66, "Thailand"),
    (81, "Japan"),
    (82, "South Korea"),
    (84, "Vietnam"),
    (86, "China"),
    (90, "Turkey"),
    (91, "India"),
    (92, "Pakistan"),
    (93, "Afghanistan"),
    (94, "Sri Lanka"),
    (95, "Myanmar"),
    (98, "Iran"),
    (211, "South Sudan"),
    (212, "Morocco"),
    (213, "Algeria"),
    (216, "Tunisia"),
    (218, "Libya"),
    (220, "Gambia"),
    (221, "Senegal"),
    (222, "Mauritania"),
    (223, "Mali"),
    (224, "Guinea"),
    (225, "Côte d'Ivoire"),
    (226, "Burkina Faso"),
    (227, "Niger"),
    (228, "Togo"),
    (229, "Benin"),
    (230, "Mauritius"),
    (231, "Liberia"),
    (232, "Sierra Leone"),
    (233, "Ghana"),
    (234, "Nigeria"),
    (235, "Chad"),
    (236, "Central African Republic"),
    (237, "Cameroon"),
    (238, "Cape Verde"),
    (239, "São Tomé and Príncipe"),
    (240, "Equatorial Guinea"),
    (241, "Gabon"),
    (242, "Republic of the Congo"),
    (243, "Democratic Republic of the Congo"),
    (244, "Angola"),
    (245, "Guinea-Bissau"),
    (246, "Diego Garcia"),
    (247, "Ascension Island"),
    (248, "Seychelles"),
    (249, "Sudan"),
    (250, "Rwanda"),
    (251, "Ethiopia"),
    (252, "Somalia"),
    (253, "Djibouti"),
    (254, "Kenya"),
    (255, "Tanzania"),
    (256, "Uganda"),
    (257, "Burundi"),
    (258, "Mozambique"),
    (260, "Zambia"),
    (261, "Madagascar"),
    (262, "Réunion / Mayotte"),
    (263, "Zimbabwe"),
    (264, "Namibia"),
    (265, "Malawi"),
    (266, "Lesotho"),
    (267, "Botswana"),
    (268, "Eswatini"),
    (269, "Comoros"),
    (290, "Saint Helena / Tristan da Cunha"),
    (291, "Eritrea"),
    (297, "Aruba"),
    (298, "Faroe Islands"),
    (299, "Greenland"),
    (350, "Gibraltar"),
    (351, "Portugal"),
    (352, "Luxembourg"),
    (353, "Ireland"),
    (354, "Iceland"),
    (355, "Albania"),
    (356, "Malta"),
    (357, "Cyprus"),
    (358, "Finland"),
    (359, "Bulgaria"),
    (370, "Lithuania"),
    (371, "Latvia"),
    (372, "Estonia"),
    (373, "Moldova"),
    (374, "Armenia"),
    (375, "Belarus"),
    (376, "Andorra"),
    (377, "Monaco"),
    (378, "San Marino"),
    (379, "Vatican City"),
    (380, "Ukraine"),
    (381, "Serbia"),
    (382, "Montenegro"),
    (383, "Kosovo"),
    (385, "Croatia"),
    (386, "Slovenia"),
    (387, "Bosnia and Herzegovina"),
    (389, "North Macedonia"),
    (420, "Czech Republic"),
    (421, "Slovakia"),
    (423, "Liechtenstein"),
    (500, "Falkland Islands"),
    (501, "Belize"),
    (502, "Guatemala"),
    (503, "El Salvador"),
    (504, "Honduras"),
    (505, "Nicaragua"),
    (506, "Costa Rica"),
    (507, "Panama"),
    (508, "Saint Pierre and Miquelon"),
    (509, "Haiti"),
    (590, "Guadeloupe"),
    (591, "Bolivia"),
    (592, "Guyana"),
    (593, "Ecuador"),
    (594, "French Guiana"),
    (595, "Paraguay"),
    (596, "Martinique"),
    (597, "Suriname"),
    (598, "Uruguay"),
    (599, "Curaçao / Caribbean Netherlands"),
    (670, "Timor-Leste"),
    (672, "Norfolk Island / Australian External Territories"),
    (673, "Brunei"),
    (674, "Nauru"),
    (675, "Papua New Guinea"),
    (676, "Tonga"),
    (677, "Solomon Islands"),
    (678, "Vanuatu"),
    (679, "Fiji"),
    (680, "Palau"),
    (681, "Wallis and Futuna"),
    (682, "Cook Islands"),
    (683, "Niue"),
    (685, "Samoa"),
    (686, "Kiribati"),
    (687, "New Caledonia"),
    (688, "Tuvalu"),
    (689, "French Polynesia"),
    (690, "Tokelau"),
    (691, "Micronesia"),
    (692, "Marshall Islands"),
    (800, "International Freephone Service"),
    (808, "International Shared Cost Service"),
    (850, "North Korea"),
    (852, "Hong Kong"),
    (853, "Macau"),
    (855, "Cambodia"),
    (856, "Laos"),
    (870, "Inmarsat"),
    (878, "Universal Personal Telecommunications"),
    (880, "Bangladesh"),
    (881, "Global Mobile Satellite System"),
    (882, "International Networks"),
    (883, "International Networks"),
    (886, "Taiwan"),
    (888, "Telecommunications for Disaster Relief (OCHA)"),
    (960, "Maldives"),
    (961, "Lebanon"),
    (962, "Jordan"),
    (963, "Syria"),
    (964, "Iraq"),
    (965, "Kuwait"),
    (966, "Saudi Arabia"),
    (967, "Yemen"),
    (968, "Oman"),
    (970, "Palestine"),
    (971, "United Arab Emirates"),
    (972, "Israel"),
    (973, "Bahrain"),
    (974, "Qatar"),
    (975, "Bhutan"),
    (976, "Mongolia"),
    (977, "Nepal"),
    (979, "International Premium Rate Service"),
    (
        991,
        "International Telecommunications Public Correspondence Service",
    ),
    (992, "Tajikistan"),
    (993, "Turkmenistan"),
    (994, "Azerbaijan"),
    (995, "Georgia"),
    (996, "Kyrgyzstan"),
    (998, "Uzbekistan"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_prefix_free() {
        assert!(
            ASSIGNED.windows(2).all(|w| w[0].0 < w[1].0),
            "table must be sorted"
        );
        for &(code, name) in ASSIGNED {
            let digits = code.to_string();
            for len in 1..digits.len() {
                let head: u16 = digits[..len].parse().unwrap_or_default();
                assert!(
                    name_of(head).is_none(),
                    "{code} ({name}) has the assigned code {head} as a prefix"
                );
            }
        }
    }

    #[test]
    fn country_codes_of_numbers_across_one_two_and_three_digits() {
        let cases: &[(&str, u16)] = &[
            // one digit
            ("12025550123", 1),
            ("14165550123", 1),
            ("74951234567", 7),
            ("77172123456", 7),
            // two digits
            ("447700900123", 44),
            ("33142685300", 33),
            ("4930123456", 49),
            ("390612345678", 39),
            ("34912345678", 34),
            ("31201234567", 31),
            ("41441234567", 41),
            ("46812345678", 46),
            ("61212345678", 61),
            ("81312345678", 81),
            ("861012345678", 86),
            ("919812345678", 91),
            ("5511912345678", 55),
            ("525512345678", 52),
            ("27211234567", 27),
            ("201001234567", 20),
            ("902121234567", 90),
            ("982112345678", 98),
            // three digits
            ("353861234567", 353),
            ("351211234567", 351),
            ("358912345678", 358),
            ("380441234567", 380),
            ("420212345678", 420),
            ("421212345678", 421),
            ("2348012345678", 234),
            ("254712345678", 254),
            ("97143123456", 971),
            ("972312345678", 972),
            ("85221234567", 852),
            ("88021234567", 880),
            ("5999123456", 599),
            ("6797123456", 679),
            ("80012345678", 800),
            ("88213012345", 882),
            ("9989012345678", 998),
            ("2906123", 290),
        ];
        assert!(cases.len() >= 30);
        for &(number, expected) in cases {
            let code = CountryCode::of(number).map(CountryCode::get);
            assert_eq!(code, Some(expected), "country code of +{number}");
            assert_eq!(
                CountryCode(expected).digit_count(),
                expected.to_string().len(),
                "length of {expected}"
            );
        }
    }

    #[test]
    fn unassigned_codes_have_no_country() {
        for number in [
            "2101234567",
            "2801234567",
            "4221234567",
            "6711234567",
            "9991234567",
            "0441",
        ] {
            assert_eq!(
                CountryCode::of(number),
                None,
                "+{number} has no assigned code"
            );
        }
    }

    #[test]
    fn names_come_from_the_table() {
        assert_eq!(CountryCode(44).name(), "United Kingdom");
        assert_eq!(CountryCode(1).name(), "North American Numbering Plan");
    }
}
