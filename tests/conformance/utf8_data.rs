//! UTF-8 test sequences of Autobahn|Testsuite cases 6.5–6.23 (taken from
//! Markus Kuhn's UTF-8 decoder stress test), plus extra boundary cases.
//!
//! Validity is declared per sequence and cross-checked against
//! `std::str::from_utf8`, which serves as the independent oracle.

/// One Autobahn subsection: its number (6.N), title, and sequences.
pub struct Section {
    pub number: u32,
    pub title: &'static str,
    pub seqs: Vec<(bool, Vec<u8>)>,
}

fn b(s: &[u8]) -> Vec<u8> {
    s.to_vec()
}

/// The Greek word "kosme", the sample string of many 6.x cases.
pub const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";

pub fn autobahn_sections() -> Vec<Section> {
    let mut v = Vec::new();
    let mut n = 5;
    let mut push = |title: &'static str, seqs: Vec<(bool, Vec<u8>)>| {
        v.push(Section {
            number: n,
            title,
            seqs,
        });
        n += 1;
    };

    // 6.5 Some correct UTF-8 text
    push(
        "Some valid UTF-8 sequences",
        vec![
            (true, b(b"hello\x24world")),
            (true, b(b"hello\xc2\xa2world")),
            (true, b(b"hello\xe2\x82\xacworld")),
            (true, b(b"hello\xf0\xa4\xad\xa2world")),
            (true, b(KOSME)),
        ],
    );
    // 6.6 All prefixes of "kosme": those ending inside a code point are invalid.
    push(
        "All prefixes of a valid UTF-8 string that contains multi-byte code points",
        (1..=KOSME.len())
            .map(|i| {
                (
                    std::str::from_utf8(&KOSME[..i]).is_ok(),
                    KOSME[..i].to_vec(),
                )
            })
            .collect(),
    );
    // 6.7 (2.1) First possible sequence of a certain length
    push(
        "First possible sequence of a certain length",
        vec![
            (true, b(b"\x00")),
            (true, b(b"\xc2\x80")),
            (true, b(b"\xe0\xa0\x80")),
            (true, b(b"\xf0\x90\x80\x80")),
        ],
    );
    // 6.8 First possible sequence length 5/6 (invalid code points)
    push(
        "First possible sequence length 5/6 (invalid codepoints)",
        vec![
            (false, b(b"\xf8\x88\x80\x80\x80")),
            (false, b(b"\xfc\x84\x80\x80\x80\x80")),
        ],
    );
    // 6.9 (2.2) Last possible sequence of a certain length
    push(
        "Last possible sequence of a certain length",
        vec![
            (true, b(b"\x7f")),
            (true, b(b"\xdf\xbf")),
            (true, b(b"\xef\xbf\xbf")),
            (true, b(b"\xf4\x8f\xbf\xbf")),
        ],
    );
    // 6.10 Last possible sequence length 4/5/6 (invalid code points)
    push(
        "Last possible sequence length 4/5/6 (invalid codepoints)",
        vec![
            (false, b(b"\xf7\xbf\xbf\xbf")),
            (false, b(b"\xfb\xbf\xbf\xbf\xbf")),
            (false, b(b"\xfd\xbf\xbf\xbf\xbf\xbf")),
        ],
    );
    // 6.11 (2.3) Other boundary conditions
    push(
        "Other boundary conditions",
        vec![
            (true, b(b"\xed\x9f\xbf")),
            (true, b(b"\xee\x80\x80")),
            (true, b(b"\xef\xbf\xbd")),
            (true, b(b"\xf4\x8f\xbf\xbf")),
            (false, b(b"\xf4\x90\x80\x80")),
        ],
    );
    // 6.12 (3.1) Unexpected continuation bytes
    push(
        "Unexpected continuation bytes",
        vec![
            (false, b(b"\x80")),
            (false, b(b"\xbf")),
            (false, b(b"\x80\xbf")),
            (false, b(b"\x80\xbf\x80")),
            (false, b(b"\x80\xbf\x80\xbf")),
            (false, b(b"\x80\xbf\x80\xbf\x80")),
            (false, b(b"\x80\xbf\x80\xbf\x80\xbf")),
            (false, (0x80u8..0xbf).collect()),
        ],
    );
    // 6.13 (3.2) Lonely start characters, each followed by a space
    push(
        "Lonely start characters",
        [
            (0xc0u8, 0xdfu8),
            (0xe0, 0xef),
            (0xf0, 0xf7),
            (0xf8, 0xfb),
            (0xfc, 0xfd),
        ]
        .iter()
        .map(|&(lo, hi)| (false, (lo..hi).flat_map(|c| [c, 0x20]).collect()))
        .collect(),
    );
    // 6.14 (3.3) Sequences with last continuation byte missing
    let missing: Vec<&[u8]> = vec![
        b"\xc0",
        b"\xe0\x80",
        b"\xf0\x80\x80",
        b"\xf8\x80\x80\x80",
        b"\xfc\x80\x80\x80\x80",
        b"\xdf",
        b"\xef\xbf",
        b"\xf7\xbf\xbf",
        b"\xfb\xbf\xbf\xbf",
        b"\xfd\xbf\xbf\xbf\xbf",
    ];
    push(
        "Sequences with last continuation byte missing",
        missing.iter().map(|s| (false, s.to_vec())).collect(),
    );
    // 6.15 (3.4) Concatenation of incomplete sequences
    push(
        "Concatenation of incomplete sequences",
        vec![(false, missing.concat())],
    );
    // 6.16 (3.5) Impossible bytes
    push(
        "Impossible bytes",
        vec![
            (false, b(b"\xfe")),
            (false, b(b"\xff")),
            (false, b(b"\xfe\xfe\xff\xff")),
        ],
    );
    // 6.17 (4.1) Examples of an overlong ASCII character
    push(
        "Examples of an overlong ASCII character",
        vec![
            (false, b(b"\xc0\xaf")),
            (false, b(b"\xe0\x80\xaf")),
            (false, b(b"\xf0\x80\x80\xaf")),
            (false, b(b"\xf8\x80\x80\x80\xaf")),
            (false, b(b"\xfc\x80\x80\x80\x80\xaf")),
        ],
    );
    // 6.18 (4.2) Maximum overlong sequences
    push(
        "Maximum overlong sequences",
        vec![
            (false, b(b"\xc1\xbf")),
            (false, b(b"\xe0\x9f\xbf")),
            (false, b(b"\xf0\x8f\xbf\xbf")),
            (false, b(b"\xf8\x87\xbf\xbf\xbf")),
            (false, b(b"\xfc\x83\xbf\xbf\xbf\xbf")),
        ],
    );
    // 6.19 (4.3) Overlong representation of the NUL character
    push(
        "Overlong representation of the NUL character",
        vec![
            (false, b(b"\xc0\x80")),
            (false, b(b"\xe0\x80\x80")),
            (false, b(b"\xf0\x80\x80\x80")),
            (false, b(b"\xf8\x80\x80\x80\x80")),
            (false, b(b"\xfc\x80\x80\x80\x80\x80")),
        ],
    );
    // 6.20 (5.1) Single UTF-16 surrogates
    push(
        "Single UTF-16 surrogates",
        vec![
            (false, b(b"\xed\xa0\x80")),
            (false, b(b"\xed\xad\xbf")),
            (false, b(b"\xed\xae\x80")),
            (false, b(b"\xed\xaf\xbf")),
            (false, b(b"\xed\xb0\x80")),
            (false, b(b"\xed\xbe\x80")),
            (false, b(b"\xed\xbf\xbf")),
        ],
    );
    // 6.21 (5.2) Paired UTF-16 surrogates
    push(
        "Paired UTF-16 surrogates",
        vec![
            (false, b(b"\xed\xa0\x80\xed\xb0\x80")),
            (false, b(b"\xed\xa0\x80\xed\xbf\xbf")),
            (false, b(b"\xed\xad\xbf\xed\xb0\x80")),
            (false, b(b"\xed\xad\xbf\xed\xbf\xbf")),
            (false, b(b"\xed\xae\x80\xed\xb0\x80")),
            (false, b(b"\xed\xae\x80\xed\xbf\xbf")),
            (false, b(b"\xed\xaf\xbf\xed\xb0\x80")),
            (false, b(b"\xed\xaf\xbf\xed\xbf\xbf")),
        ],
    );
    // 6.22 (5.3) Non-character code points: valid UTF-8 (RFC 3629).
    let mut nonchars = vec![(true, b(b"\xef\xbf\xbe")), (true, b(b"\xef\xbf\xbf"))];
    for z1 in [0xf0u8, 0xf1, 0xf2, 0xf3, 0xf4] {
        for z2 in [0x8fu8, 0x9f, 0xaf, 0xbf] {
            if z1 == 0xf4 && z2 != 0x8f {
                continue; // beyond U+10FFFF
            }
            for z3 in [0xbeu8, 0xbf] {
                let zz = vec![z1, z2, 0xbf, z3];
                if z1 == 0xf0 && z2 == 0x8f {
                    continue; // overlong
                }
                nonchars.push((true, zz));
            }
        }
    }
    push("Non-character code points (valid UTF-8)", nonchars);
    // 6.23 Unicode specials
    push(
        "Unicode specials (i.e. replacement char)",
        vec![
            (true, b(b"\xef\xbf\xb9")),
            (true, b(b"\xef\xbf\xba")),
            (true, b(b"\xef\xbf\xbb")),
            (true, b(b"\xef\xbf\xbc")),
            (true, b(b"\xef\xbf\xbd")),
            (true, b(b"\xef\xbf\xbe")),
            (true, b(b"\xef\xbf\xbf")),
        ],
    );
    v
}

/// Extra invalid sequences beyond the Autobahn set: every byte that can
/// never appear (C0, C1, F5–FF) alone and before ASCII, surrogate samples
/// over the whole D800–DFFF range (first, last, both halves' edges, and a
/// stride), code points above U+10FFFF, truncations inside longer text.
pub fn extra_invalid() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    for byte in [0xc0u8, 0xc1].into_iter().chain(0xf5..=0xff) {
        v.push((format!("lone {byte:#04x}"), vec![byte]));
        v.push((
            format!("{byte:#04x} inside ASCII"),
            [b"abc".as_slice(), &[byte], b"def"].concat(),
        ));
    }
    let mut surrogates: Vec<u32> = vec![
        0xd800, 0xd801, 0xdb7f, 0xdb80, 0xdbff, 0xdc00, 0xdc01, 0xdffe, 0xdfff,
    ];
    surrogates.extend((0xd800..=0xdfff).step_by(0x7f));
    surrogates.sort_unstable();
    surrogates.dedup();
    for s in surrogates {
        let enc = vec![
            0xe0 | (s >> 12) as u8,
            0x80 | ((s >> 6) & 0x3f) as u8,
            0x80 | (s & 0x3f) as u8,
        ];
        v.push((
            format!("surrogate U+{s:04X}"),
            [b"ok ".as_slice(), &enc, b" ok"].concat(),
        ));
    }
    for cp in [0x110000u32, 0x110001, 0x13ffff, 0x140000, 0x1fffff] {
        let enc = vec![
            0xf0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3f) as u8,
            0x80 | ((cp >> 6) & 0x3f) as u8,
            0x80 | (cp & 0x3f) as u8,
        ];
        v.push((format!("code point {cp:#x} (> U+10FFFF)"), enc));
    }
    v.push(("overlong U+07FF in 3 bytes".into(), b(b"\xe0\x9f\xbf")));
    v.push(("overlong U+FFFF in 4 bytes".into(), b(b"\xf0\x8f\xbf\xbf")));
    v.push((
        "truncated 4-byte sequence before ASCII".into(),
        b(b"\xf0\x9f\x98x"),
    ));
    v.push((
        "truncated 3-byte sequence at end".into(),
        b(b"valid so far \xe2\x82"),
    ));
    v.push((
        "truncated 2-byte sequence before a lead byte".into(),
        b(b"\xc3\xc3\xa9"),
    ));
    v.push(("continuation byte after ASCII".into(), b(b"a\x80")));
    v.push((
        "kosme then a continuation byte".into(),
        [KOSME, b"\xa0"].concat(),
    ));
    v
}

/// Extra valid sequences: every boundary of every encoded length, the
/// neighbours of the surrogate range and of U+10FFFF, BOM, NUL.
pub fn extra_valid() -> Vec<(String, Vec<u8>)> {
    let cps = [
        0x0u32, 0x1, 0x7e, 0x7f, 0x80, 0x81, 0x7fe, 0x7ff, 0x800, 0x801, 0xfff, 0x1000, 0xcfff,
        0xd000, 0xd7ff, 0xe000, 0xfeff, 0xfffd, 0xfffe, 0xffff, 0x10000, 0x10001, 0x3ffff, 0x40000,
        0xfffff, 0x100000, 0x10fffe, 0x10ffff,
    ];
    let mut v: Vec<(String, Vec<u8>)> = cps
        .iter()
        .map(|&cp| {
            let ch = char::from_u32(cp).unwrap();
            let mut s = String::from("<");
            s.push(ch);
            s.push('>');
            (format!("U+{cp:04X}"), s.into_bytes())
        })
        .collect();
    let all: String = cps.iter().map(|&c| char::from_u32(c).unwrap()).collect();
    v.push((
        "all boundary code points in one message".into(),
        all.into_bytes(),
    ));
    v
}

/// Index of the first byte at which `seq` stops being a prefix of any valid
/// UTF-8 text (where a validator must fail at the latest), or `None` if the
/// only problem is a sequence truncated at the end (or if `seq` is valid).
pub fn first_bad_byte(seq: &[u8]) -> Option<usize> {
    (0..seq.len())
        .find(|&k| matches!(std::str::from_utf8(&seq[..=k]), Err(e) if e.error_len().is_some()))
}
