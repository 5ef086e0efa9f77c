//! The rules of Stanford CoreNLP 3.4.1's `PTBLexer.flex`, in its order, with the options pycocoevalcap's
//! `PTBTokenizer -preserveLines -lowerCase` runs it with (PTB3 escaping on, `americanize` off, slashes
//! and asterisks not escaped, `splitAssimilations` on, untokenizable characters deleted).
//!
//! Matching follows JFlex: at each position the rule with the longest match wins, trailing context
//! (`r1/r2`) counting towards the length; ties go to the earlier rule; `yypushback` returns characters
//! to the input. The rules are restated here from the specification, not translated from its generated
//! tables, and are proven equal to the jar on every caption of the shared RSICD, UCM and Sydney
//! annotations (see `tests/ptb_jar_equality.rs`) and on a list of hand-made edge cases.
//!
//! Known deviations, all outside plain English text:
//! - `[:letter:]`, `[:digit:]` and `[:uppercase:]` use Rust's Unicode tables (the jar uses those of the
//!   JDK JFlex ran on); characters beyond U+FFFF count as one character, not two UTF-16 units.
//! - Line terminators other than `\n` inside a caption (`\r`, U+2028, …) are treated as spaces. The jar
//!   would emit a line break there, which makes pycocoevalcap assign the rest of the captions to the
//!   wrong images.

use std::sync::OnceLock;

use super::pattern::*;

/// What a matched rule emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// The matched text.
    Text,
    /// The matched text minus `n` trailing characters, which are lexed again.
    PushBack(usize),
    /// The matched text, then its last character (a period) is lexed again.
    KeepAndPushBackPeriod,
    /// Soft hyphens (U+00AD) removed.
    NoSoftHyphens,
    /// Spaces become U+00A0.
    NbspSpaces,
    /// `--`.
    Dash,
    /// `&amp;` (any case) becomes `&`.
    Amp,
    /// Latex quotes, probably an opening quote.
    QuoteLeft,
    /// Latex quotes, probably a closing quote.
    QuoteRight,
    Fraction,
    Currency,
    /// `ACRONYM` before a sentence-initial word.
    AcronymSentenceEnd,
    /// `ABBREV3` before a number: drop whitespace the trailing context may have swallowed.
    TrimTrailingSpace,
    Phone,
    Smiley,
    Replace(&'static str),
    Hyphens,
    Ellipsis,
    /// Nothing is emitted (whitespace, untokenizable characters).
    Skip,
}

struct Rule {
    main: Pattern,
    trail: Option<Pattern>,
    action: Action,
    /// `main.can_start(c)` for ASCII `c`, precomputed: most characters rule out most rules at once.
    ascii_start: [bool; 128],
}

impl Rule {
    fn can_start(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii_start[c as usize]
        } else {
            self.main.can_start(c)
        }
    }
}

pub struct Lexer {
    rules: Vec<Rule>,
}

fn c_letter(c: char) -> bool {
    // Java's Character.isLetter is category L*; Rust's is_alphabetic adds Nl and Other_Alphabetic marks.
    // For BMP text the difference is a handful of combining marks that LETTER lists explicitly anyway.
    (c as u32) <= 0xFFFF && c.is_alphabetic()
}

fn c_digit(c: char) -> bool {
    c.is_ascii_digit()
        || ((c as u32) <= 0xFFFF && !c.is_ascii() && c.is_numeric() && is_decimal_digit(c))
}

/// Unicode category Nd for non-ASCII BMP characters: decimal digits come in aligned runs of ten whose
/// first member has numeric value 0, which `char::to_digit` cannot tell us, so the common blocks are listed.
fn is_decimal_digit(c: char) -> bool {
    const ZEROS: &[u32] = &[
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
        0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0,
        0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0,
        0xAA50, 0xABF0, 0xFF10,
    ];
    let u = c as u32;
    ZEROS.iter().any(|&z| (z..z + 10).contains(&u))
}

fn c_upper(c: char) -> bool {
    (c as u32) <= 0xFFFF && c.is_uppercase()
}

fn ascii_letter() -> Pattern {
    class(|c| c.is_ascii_alphabetic())
}

fn ascii_alnum() -> Pattern {
    class(|c| c.is_ascii_alphanumeric())
}

fn ascii_digit() -> Pattern {
    class(|c| c.is_ascii_digit())
}

fn letter_class() -> Pattern {
    class(c_letter)
}

fn digit() -> Pattern {
    // DIGIT = [:digit:]|[\u07C0-\u07C9]
    class(|c| c_digit(c) || ('\u{07C0}'..='\u{07C9}').contains(&c))
}

fn space() -> Pattern {
    set(" \t\u{00A0}\u{3000}", &[('\u{2000}', '\u{200A}')])
}

fn newline() -> Pattern {
    alt(vec![
        lit("\r"),
        seq(vec![opt(lit("\r")), lit("\n")]),
        set("\u{2028}\u{2029}\u{000B}\u{000C}\u{0085}", &[]),
    ])
}

fn spacenl() -> Pattern {
    alt(vec![space(), newline()])
}

/// Letters of SGML-ish names: [A-Za-z0-9_:\.\-]
fn sgml_name_char() -> Pattern {
    class(|c| c.is_ascii_alphanumeric() || "_:.-".contains(c))
}

fn sgml() -> Pattern {
    let name = seq(vec![ascii_letter(), star(sgml_name_char())]);
    let quoted = alt(vec![
        seq(vec![lit("'"), star(not_set("'", &[])), lit("'")]),
        seq(vec![lit("\""), star(not_set("\"", &[])), lit("\"")]),
    ]);
    let attr = alt(vec![
        name.clone(),
        seq(vec![name.clone(), star(lit(" ")), lit("="), star(lit(" ")), quoted]),
    ]);
    let body = alt(vec![
        seq(vec![
            set("!?", &[]),
            class(|c| c.is_ascii_alphabetic() || c == '-'),
            star(not_set(">\r\n", &[])),
        ]),
        seq(vec![
            name.clone(),
            star(seq(vec![plus(lit(" ")), attr])),
            star(lit(" ")),
            opt(lit("/")),
        ]),
        seq(vec![lit("/"), name]),
    ]);
    seq(vec![lit("<"), body, star(lit(" ")), lit(">")])
}

fn splet() -> Pattern {
    seq(vec![lit("&"), set("aeiouAEIOU", &[]), words(&["acute", "grave", "uml"]), lit(";")])
}

fn letter() -> Pattern {
    const EXTRA: &[(char, char)] = &[
        ('\u{00AD}', '\u{00AD}'),
        ('\u{0237}', '\u{024F}'),
        ('\u{02C2}', '\u{02C5}'),
        ('\u{02D2}', '\u{02DF}'),
        ('\u{02E5}', '\u{02FF}'),
        ('\u{0300}', '\u{036F}'),
        ('\u{0370}', '\u{037D}'),
        ('\u{0384}', '\u{0385}'),
        ('\u{03CF}', '\u{03CF}'),
        ('\u{03F6}', '\u{03F6}'),
        ('\u{03FC}', '\u{03FF}'),
        ('\u{0483}', '\u{0487}'),
        ('\u{04CF}', '\u{04CF}'),
        ('\u{04F6}', '\u{04FF}'),
        ('\u{0510}', '\u{0525}'),
        ('\u{055A}', '\u{055F}'),
        ('\u{0591}', '\u{05BD}'),
        ('\u{05BF}', '\u{05BF}'),
        ('\u{05C1}', '\u{05C2}'),
        ('\u{05C4}', '\u{05C5}'),
        ('\u{05C7}', '\u{05C7}'),
        ('\u{0615}', '\u{061A}'),
        ('\u{063B}', '\u{063F}'),
        ('\u{064B}', '\u{065E}'),
        ('\u{0670}', '\u{0670}'),
        ('\u{06D6}', '\u{06EF}'),
        ('\u{06FA}', '\u{06FF}'),
        ('\u{070F}', '\u{070F}'),
        ('\u{0711}', '\u{0711}'),
        ('\u{0730}', '\u{074F}'),
        ('\u{0750}', '\u{077F}'),
        ('\u{07A6}', '\u{07B1}'),
        ('\u{07CA}', '\u{07F5}'),
        ('\u{07FA}', '\u{07FA}'),
        ('\u{0900}', '\u{0903}'),
        ('\u{093C}', '\u{093C}'),
        ('\u{093E}', '\u{094E}'),
        ('\u{0951}', '\u{0955}'),
        ('\u{0962}', '\u{0963}'),
        ('\u{0981}', '\u{0983}'),
        ('\u{09BC}', '\u{09C4}'),
        ('\u{09C7}', '\u{09C8}'),
        ('\u{09CB}', '\u{09CD}'),
        ('\u{09D7}', '\u{09D7}'),
        ('\u{09E2}', '\u{09E3}'),
        ('\u{0A01}', '\u{0A03}'),
        ('\u{0A3C}', '\u{0A3C}'),
        ('\u{0A3E}', '\u{0A4F}'),
        ('\u{0A81}', '\u{0A83}'),
        ('\u{0ABC}', '\u{0ACF}'),
        ('\u{0B82}', '\u{0B82}'),
        ('\u{0BBE}', '\u{0BC2}'),
        ('\u{0BC6}', '\u{0BC8}'),
        ('\u{0BCA}', '\u{0BCD}'),
        ('\u{0C01}', '\u{0C03}'),
        ('\u{0C3E}', '\u{0C56}'),
        ('\u{0D3E}', '\u{0D44}'),
        ('\u{0D46}', '\u{0D48}'),
        ('\u{0E30}', '\u{0E3A}'),
        ('\u{0E47}', '\u{0E4E}'),
        ('\u{0EB1}', '\u{0EBC}'),
        ('\u{0EC8}', '\u{0ECD}'),
    ];
    alt(vec![letter_class(), splet(), set("", EXTRA)])
}

fn letter_or_digit() -> Pattern {
    alt(vec![letter(), digit()])
}

fn word() -> Pattern {
    // WORD = {LETTER}({LETTER}|{DIGIT})*([.!?]{LETTER}({LETTER}|{DIGIT})*)*
    let tail = star(letter_or_digit());
    seq(vec![letter(), tail.clone(), star(seq(vec![set(".!?", &[]), letter(), tail]))])
}

fn filename() -> Pattern {
    let ext = words(&[
        "bat", "bmp", "c", "class", "cgi", "cpp", "dll", "doc", "docx", "exe", "gif", "gz", "h",
        "htm", "html", "jar", "java", "jpeg", "jpg", "mov", "mp3", "pdf", "php", "pl", "png",
        "ppt", "ps", "py", "sql", "tar", "txt", "wav", "x", "xml", "zip",
    ]);
    let chunk = plus(letter_or_digit());
    seq(vec![chunk.clone(), star(seq(vec![lit("."), chunk])), lit("."), ext])
}

fn apos() -> Pattern {
    alt(vec![set("'\u{0092}\u{2019}", &[]), lit("&apos;")])
}

fn aposetc() -> Pattern {
    alt(vec![apos(), set("`\u{0091}\u{2018}\u{201B}", &[])])
}

fn hyphen() -> Pattern {
    set("-_\u{058A}\u{2010}\u{2011}", &[])
}

fn jletter_or_digit() -> Pattern {
    class(|c| c_letter(c) || c_digit(c))
}

fn thing() -> Pattern {
    let prefix = opt(seq(vec![set("dDoOlL", &[]), aposetc(), jletter_or_digit()]));
    let body = plus(jletter_or_digit());
    seq(vec![prefix.clone(), body.clone(), star(seq(vec![hyphen(), prefix, body]))])
}

fn thinga() -> Pattern {
    let caps = plus(class(|c| c.is_ascii_uppercase()));
    seq(vec![caps.clone(), plus(seq(vec![alt(vec![set("+&", &[]), lit("&amp;")]), caps]))])
}

fn thing3() -> Pattern {
    let hy = rep(seq(vec![lit("-"), plus(ascii_letter())]), 0, 2);
    let part = seq(vec![plus(ascii_alnum()), hy.clone()]);
    seq(vec![part.clone(), rep(seq(vec![opt(lit("\\")), lit("/"), part]), 1, 2)])
}

fn acro_alternatives() -> Vec<Pattern> {
    vec![
        seq(vec![words(&["Canada", "Sino", "Korean", "EU", "Japan", "non"]), lit("-U.S")]),
        seq(vec![lit("U.S.-"), words(&["U.K", "U.S.S.R"])]),
    ]
}

fn acro(min_dots: u32) -> Pattern {
    let mut v = vec![seq(vec![
        ascii_letter(),
        rep(seq(vec![lit("."), ascii_letter()]), min_dots, u32::MAX),
    ])];
    v.extend(acro_alternatives());
    alt(v)
}

fn hthing() -> Pattern {
    // [A-Za-z0-9][A-Za-z0-9.,\u00AD]*(-([A-Za-z0-9\u00AD]+|{ACRO2}\.))+
    let tail = plus(class(|c| c.is_ascii_alphanumeric() || c == '\u{00AD}'));
    seq(vec![
        ascii_alnum(),
        star(class(|c| c.is_ascii_alphanumeric() || ".,\u{00AD}".contains(c))),
        plus(seq(vec![lit("-"), alt(vec![tail, seq(vec![acro(1), lit(".")])])])),
    ])
}

fn redaux() -> Pattern {
    seq(vec![apos(), alt(vec![set("msdMSD", &[]), lit("re"), lit("ve"), lit("ll")])])
}

fn sword() -> Pattern {
    seq(vec![
        star(class(|c| c.is_ascii_alphabetic() || c == '\u{00AD}')),
        class(|c| c.is_ascii_alphabetic() && c != 'n' && c != 'N'),
        star(lit("\u{00AD}")),
    ])
}

fn sredaux() -> Pattern {
    seq(vec![lit("n"), aposetc(), lit("t")])
}

fn apoword() -> Pattern {
    let l = letter_class;
    alt(vec![
        seq(vec![apos(), lit("n"), opt(apos())]),
        seq(vec![set("lLdDjJ", &[]), apos()]),
        seq(vec![lit("Dunkin"), apos()]),
        seq(vec![lit("somethin"), apos()]),
        seq(vec![lit("ol"), apos()]),
        seq(vec![apos(), lit("em")]),
        seq(vec![
            class(|c| matches!(c, 'A'..='H' | 'J'..='X' | 'Z' | 'n')),
            aposetc(),
            l(),
            l(),
            star(l()),
        ]),
        seq(vec![apos(), set("23456789", &[]), lit("0s")]),
        seq(vec![apos(), lit("til"), opt(lit("l"))]),
        seq(vec![
            l(),
            star(l()),
            set("aeiouyAEIOUY", &[]),
            aposetc(),
            class(|c| "aeiou".contains(c) || c.is_ascii_uppercase()),
            star(l()),
        ]),
        seq(vec![apos(), lit("cause")]),
        seq(vec![lit("cont'd"), opt(lit("."))]),
        words(&["'twas", "nor'easter", "c'mon", "e'er", "s'mores", "ev'ry", "li'l", "nat'l"]),
        seq(vec![lit("O"), aposetc(), lit("o")]),
    ])
}

fn fullurl() -> Pattern {
    seq(vec![
        lit("http"),
        opt(lit("s")),
        lit("://"),
        plus(not_set(" \t\n\u{000C}\r\"<>|(){}", &[])),
        not_set(" \t\n\u{000C}\r\"<>|.!?(){},-", &[]),
    ])
}

fn likelyurl() -> Pattern {
    let www = seq(vec![
        lit("www."),
        plus(seq(vec![plus(not_set(" \t\n\u{000C}\r\"<>|.!?(){},", &[])), lit(".")])),
        rep(ascii_letter(), 2, 4),
    ]);
    // `[^ \t\n\f\r\"`'<>|.!?(){},-_$]`: in JFlex `,-_` is the range U+002C..U+005F.
    let label = plus(not_set(" \t\n\u{000C}\r\"`'<>|.!?(){}$", &[(',', '_')]));
    let dom = seq(vec![plus(seq(vec![label, lit(".")])), words(&["com", "net", "org", "edu"])]);
    let path = opt(seq(vec![
        lit("/"),
        plus(not_set(" \t\n\u{000C}\r\"<>|()", &[])),
        not_set(" \t\n\u{000C}\r\"<>|.!?(){},-", &[]),
    ]));
    seq(vec![alt(vec![www, dom]), path])
}

fn email() -> Pattern {
    let part = plus(not_set(" \t\n\u{000C}\r\"<>|(){}.\u{00A0}", &[]));
    seq(vec![
        opt(alt(vec![lit("&lt;"), lit("<")])),
        ascii_alnum(),
        star(not_set(" \t\n\u{000C}\r\"<>|()\u{00A0}{}", &[])),
        lit("@"),
        star(seq(vec![part.clone(), lit(".")])),
        part,
        opt(alt(vec![lit("&gt;"), lit(">")])),
    ])
}

fn twitter() -> Pattern {
    alt(vec![
        seq(vec![
            lit("@"),
            class(|c| c.is_ascii_alphabetic() || c == '_'),
            star(class(|c| c.is_ascii_alphanumeric() || c == '_')),
        ]),
        seq(vec![lit("#"), plus(letter())]),
    ])
}

/// A literal whose first letter is case-sensitive (`[A]bout` in the flex file) and the rest caseless.
fn cap(first: char, rest: &'static str) -> Pattern {
    seq(vec![class(move |c| c == first), lit(rest)])
}

fn abbrev1() -> Pattern {
    let months = words(&[
        "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
    ]);
    let days = words(&["Mon", "Tue", "Tues", "Wed", "Thu", "Thurs", "Fri"]);
    let states = alt(vec![
        words(&["Ala", "Ariz"]),
        cap('A', "z"),
        cap('A', "rk"),
        words(&["Calif", "Colo", "Conn", "Ct", "Dak"]),
        cap('D', "el"),
        words(&["Fla", "Ga"]),
        cap('I', "ll"),
        words(&["Ind", "Kan", "Kans", "Ky"]),
        cap('L', "a"),
        cap('M', "ass"),
        words(&["Md", "Mich", "Minn"]),
        cap('M', "iss"),
        words(&["Mo", "Mont", "Neb", "Nev", "Okla"]),
        cap('O', "re"),
        cap('P', "a"),
        words(&["Penn", "Tenn"]),
        cap('T', "ex"),
        words(&["Va", "Vt"]),
        cap('W', "ash"),
        words(&["Wis", "Wisc", "Wyo"]),
    ]);
    let comp = alt(vec![
        words(&["Inc", "Co", "Cos", "Corp"]),
        // Pp?t[ye]s?
        seq(vec![lit("P"), opt(lit("p")), lit("t"), set("ye", &[]), opt(lit("s"))]),
        words(&["Ltd", "Plc", "Rt", "Bancorp", "Bhd", "Assn", "Univ", "Intl", "Sys"]),
    ]);
    let num = words(&["tel", "est", "ext", "sq"]);
    let ptit = alt(vec![
        words(&["Jr", "Sr", "Bros"]),
        seq(vec![words(&["Ed", "Ph"]), lit(".D")]),
        words(&["Blvd", "Rd", "Esq"]),
    ]);
    let misc = words(&["etc", "al", "seq", "Bldg"]);
    seq(vec![alt(vec![months, days, states, comp, num, ptit, misc]), lit(".")])
}

fn abbrev4() -> Pattern {
    let title = alt(vec![
        words(&["Mr", "Mrs", "Ms"]),
        cap('M', "iss"),
        words(&[
            "Dr", "Drs", "Prof", "Profs", "Sen", "Sens", "Rep", "Reps", "Atty", "Attys", "Lt",
            "Col", "Gen", "Messrs", "Gov", "Govs", "Adm", "Rev", "Maj", "Sgt", "Cpl", "Pvt",
            "Capt", "St", "Ste", "Ave", "Pres", "Lieut", "Hon", "Brig", "Cmdr", "Comdr", "Pfc",
            "Spc", "Supt", "Supts", "Det", "Mt", "Ft", "Adj", "Adv", "Asst", "Assoc", "Ens",
            "Insp", "Mlle", "Mme", "Msgr", "Sfc",
        ]),
    ]);
    let comp2 = alt(vec![
        words(&["Invt", "Elec", "Natl", "Dept"]),
        seq(vec![lit("M"), set("ft", &[]), lit("g")]),
    ]);
    alt(vec![
        title,
        words(&["vs", "Alex", "Wm", "Jos", "Cie", "a.k.a", "cf", "TREAS", "Ph"]),
        acro(0),
        comp2,
    ])
}

fn abbrev3() -> Pattern {
    seq(vec![
        words(&["ca", "fig", "figs", "prop", "no", "nos", "art", "bldg", "pp", "op"]),
        lit("."),
    ])
}

fn phone() -> Pattern {
    let d = |a, b| rep(ascii_digit(), a, b);
    let sep = set("- \u{00A0}", &[]);
    let plus2 = opt(seq(vec![lit("+"), opt(lit("+"))]));
    let first = alt(vec![
        seq(vec![lit("("), d(2, 3), lit(")"), opt(set(" \u{00A0}", &[]))]),
        seq(vec![plus2.clone(), opt(seq(vec![d(2, 4), sep.clone()])), d(2, 4), sep.clone()]),
    ]);
    let a = seq(vec![first, d(3, 4), opt(sep), d(3, 5)]);
    let b = seq(vec![
        opt(seq(vec![plus2, d(2, 4), lit(".")])),
        d(2, 4),
        lit("."),
        d(3, 4),
        lit("."),
        d(3, 5),
    ]);
    alt(vec![a, b])
}

fn quotes() -> Pattern {
    alt(vec![
        apos(),
        lit("''"),
        rep(set("`\u{2018}\u{2019}\u{201A}\u{201B}\u{201C}\u{201D}\u{0091}\u{0092}\u{0093}\u{0094}\u{201E}\u{201F}\u{2039}\u{203A}\u{00AB}\u{00BB}", &[]), 1, 2),
    ])
}

fn dblquot() -> Pattern {
    alt(vec![lit("\""), lit("&quot;")])
}

fn tbspec() -> Pattern {
    alt(vec![
        seq(vec![lit("-"), words(&["RRB", "LRB", "RCB", "LCB", "RSB", "LSB"]), lit("-")]),
        words(&["C.D.s", "pro-", "anti-"]),
        seq(vec![lit("S"), alt(vec![lit("&"), lit("&amp;")]), words(&["P-500", "Ls"])]),
        seq(vec![lit("Cap"), apos(), lit("n")]),
        seq(vec![lit("c"), apos(), lit("est")]),
    ])
}

fn smiley() -> Pattern {
    seq(vec![
        opt(set("<>", &[])),
        set(":;=", &[]),
        opt(set("-o*'", &[])),
        set("()DPdpO\\{@|[]", &[]),
    ])
}

fn asian_smiley() -> Pattern {
    let eye = set("^x=~<>", &[]);
    let eye2 = set("-^x=~<>'", &[]);
    alt(vec![
        // `[\^x=~<>]\.\[\^x=~<>]` in the flex file: the second bracket is escaped, so it is a literal.
        seq(vec![eye.clone(), lit(".[^x=~<>]")]),
        seq(vec![eye2.clone(), lit("_"), eye2.clone()]),
        seq(vec![lit("("), eye2.clone(), opt(set("_.", &[])), eye2, lit(")")]),
        seq(vec![lit("("), set("^x=~<>'", &[]), lit("-"), set("^x=~<>'`", &[]), lit(")")]),
    ])
}

fn miscsymbol() -> Pattern {
    set(
        "+%&~^|\\\u{00A6}\u{00A7}\u{00A8}\u{00A9}\u{00AC}\u{00AE}\u{00AF}\u{00D7}\u{00F7}\u{0387}\u{05BE}\u{05C0}\u{05C3}\u{05C6}\u{05F3}\u{05F4}\u{060C}\u{0614}\u{061B}\u{061E}\u{066A}\u{066D}\u{07F6}\u{07F7}\u{07F8}\u{0964}\u{0965}\u{0E4F}\u{1FBD}\u{2016}\u{2017}\u{203B}\u{2044}\u{3012}\u{30FB}",
        &[
            ('\u{00B0}', '\u{00BA}'), ('\u{0600}', '\u{0603}'), ('\u{0606}', '\u{060A}'), ('\u{0703}', '\u{070D}'),
            ('\u{2020}', '\u{2023}'), ('\u{2030}', '\u{2038}'), ('\u{203E}', '\u{2042}'), ('\u{207A}', '\u{207F}'),
            ('\u{208A}', '\u{208E}'), ('\u{2100}', '\u{214F}'), ('\u{2190}', '\u{21FF}'), ('\u{2200}', '\u{2BFF}'),
            ('\u{FF01}', '\u{FF0F}'), ('\u{FF1A}', '\u{FF20}'), ('\u{FF3B}', '\u{FF40}'), ('\u{FF5B}', '\u{FF65}'),
        ],
    )
}

impl Lexer {
    fn new() -> Self {
        use Action::*;
        let r = |main: Pattern, trail: Option<Pattern>, action: Action| {
            let ascii_start = std::array::from_fn(|b| main.can_start(b as u8 as char));
            Rule { main, trail, action, ascii_start }
        };
        let num = alt(vec![
            plus(digit()),
            seq(vec![
                star(digit()),
                plus(seq(vec![set(".:,\u{00AD}\u{066B}\u{066C}", &[]), plus(digit())])),
            ]),
        ]);
        let number = seq(vec![opt(set("-+", &[])), num]);
        let date = seq(vec![
            rep(digit(), 1, 2),
            set("-/", &[]),
            rep(digit(), 1, 2),
            set("-/", &[]),
            rep(digit(), 2, 4),
        ]);
        let subsupnum = seq(vec![
            opt(set("\u{207A}\u{207B}\u{208A}\u{208B}", &[])),
            alt(vec![
                plus(set("\u{2070}\u{00B9}\u{00B2}\u{00B3}", &[('\u{2074}', '\u{2079}')])),
                plus(set("", &[('\u{2080}', '\u{2089}')])),
            ]),
        ]);
        let frac = seq(vec![
            opt(seq(vec![rep(digit(), 1, 4), set("- \u{00A0}", &[])])),
            rep(digit(), 1, 4),
            alt(vec![seq(vec![opt(lit("\\")), lit("/")]), lit("\u{2044}")]),
            rep(digit(), 1, 4),
        ]);
        let dolsign =
            alt(vec![seq(vec![star(class(|c| c.is_ascii_uppercase())), lit("$")]), lit("#")]);
        let dolsign2 = set(
            "\u{00A2}\u{00A3}\u{00A4}\u{00A5}\u{0080}\u{20A0}\u{20AC}\u{060B}\u{0E3F}\u{20A4}\u{FFE0}\u{FFE1}\u{FFE5}\u{FFE6}",
            &[],
        );
        let sentence_starters = alt(vec![
            cap('A', "bout"),
            cap('A', "ccording"),
            cap('A', "dditionally"),
            cap('A', "fter"),
            cap('A', "n"),
            cap('A', ""),
            cap('A', "s"),
            cap('A', "t"),
            cap('B', "ut"),
            cap('E', "arlier"),
            cap('H', "e"),
            cap('H', "er"),
            cap('H', "ere"),
            cap('H', "owever"),
            cap('I', "f"),
            cap('I', "n"),
            cap('I', "t"),
            cap('L', "ast"),
            cap('M', "any"),
            cap('M', "ore"),
            cap('M', "r."),
            cap('M', "s."),
            cap('N', "ow"),
            cap('O', "nce"),
            cap('O', "ne"),
            cap('O', "ther"),
            cap('O', "ur"),
            cap('S', "he"),
            cap('S', "ince"),
            cap('S', "o"),
            cap('S', "ome"),
            cap('S', "uch"),
            cap('T', "hat"),
            cap('T', "he"),
            cap('T', "heir"),
            cap('T', "hen"),
            cap('T', "here"),
            cap('T', "hese"),
            cap('T', "hey"),
            cap('T', "his"),
            cap('W', "e"),
            cap('W', "hen"),
            cap('W', "hile"),
            cap('W', "hat"),
            cap('Y', "et"),
            cap('Y', "ou"),
            sgml(),
        ]);
        let acronym = seq(vec![acro(0), lit(".")]);
        let sentend = seq(vec![spacenl(), alt(vec![spacenl(), class(c_upper), sgml()])]);
        let any = class(|_| true);
        let insentp = set(",;:\u{3001}", &[]);
        let rules = vec![
            r(seq(vec![lit("c"), lit("+"), lit("+")]), None, Text),
            r(seq(vec![set("cfCF", &[]), lit("#")]), None, Text),
            r(lit("cannot"), None, PushBack(3)),
            r(lit("'twas"), None, PushBack(3)),
            r(lit("'tis"), None, PushBack(2)),
            r(words(&["gonna", "gotta", "lemme", "gimme", "wanna"]), None, PushBack(2)),
            r(sgml(), None, NbspSpaces),
            r(
                alt(vec![
                    seq(vec![lit("&"), words(&["MD", "mdash", "ndash"]), lit(";")]),
                    set("\u{0096}\u{0097}\u{2013}\u{2014}\u{2015}", &[]),
                ]),
                None,
                Dash,
            ),
            r(lit("&amp;"), None, Amp),
            r(
                seq(vec![
                    lit("&"),
                    alt(vec![
                        words(&["HT", "TL", "UR", "LR", "QC", "QL", "QR", "odq", "cdq"]),
                        seq(vec![lit("#"), plus(ascii_digit())]),
                    ]),
                    lit(";"),
                ]),
                None,
                Text,
            ),
            r(word(), Some(redaux()), NoSoftHyphens),
            r(sword(), Some(sredaux()), NoSoftHyphens),
            r(word(), None, NoSoftHyphens),
            r(apoword(), None, Text),
            r(seq(vec![lit("y"), apos()]), Some(letter_class()), Text),
            r(fullurl(), None, Text),
            r(likelyurl(), None, Text),
            r(email(), None, Text),
            r(twitter(), None, Text),
            r(redaux(), Some(class(|c| !c.is_ascii_alphabetic())), QuoteRight),
            r(sredaux(), Some(class(|c| !c.is_ascii_alphabetic())), QuoteRight),
            r(date, None, Text),
            r(number, None, NoSoftHyphens),
            r(subsupnum, None, Text),
            r(frac, None, NbspSpaces),
            r(set("\u{00BC}\u{00BD}\u{00BE}", &[('\u{2153}', '\u{215E}')]), None, Fraction),
            r(tbspec(), None, Amp),
            r(thing3(), None, Text),
            r(dolsign, None, Text),
            r(dolsign2, None, Currency),
            r(
                acronym,
                Some(seq(vec![plus(spacenl()), sentence_starters, spacenl()])),
                AcronymSentenceEnd,
            ),
            r(abbrev3(), Some(seq(vec![opt(spacenl()), class(c_digit)])), TrimTrailingSpace),
            r(
                seq(vec![alt(vec![seq(vec![lit("pt"), set("eyEY", &[])]), lit("co")]), lit(".")]),
                Some(seq(vec![space(), words(&["ltd", "lim"])])),
                Text,
            ),
            r(abbrev1(), Some(sentend), KeepAndPushBackPeriod),
            // `{ABBREV1}/[^][^]`: `[^]` is any character, newlines included.
            r(abbrev1(), Some(seq(vec![any.clone(), any.clone()])), Text),
            r(abbrev1(), None, KeepAndPushBackPeriod),
            r(seq(vec![abbrev4(), lit(".")]), None, Text),
            r(abbrev4(), Some(space()), Text),
            r(acro(0), Some(spacenl()), Text),
            r(seq(vec![apos(), ascii_digit(), ascii_digit()]), Some(spacenl()), Text),
            r(filename(), Some(alt(vec![spacenl(), set(".?!,", &[])])), Text),
            r(seq(vec![word(), lit(".")]), Some(insentp.clone()), NoSoftHyphens),
            r(phone(), None, Phone),
            r(dblquot(), Some(class(|c| c.is_ascii_alphanumeric() || c == '$')), QuoteLeft),
            r(dblquot(), None, QuoteRight),
            r(lit("\u{7f}"), None, Skip),
            r(alt(vec![lit("<"), lit("&lt;")]), None, Replace("<")),
            r(alt(vec![lit(">"), lit("&gt;")]), None, Replace(">")),
            r(smiley(), Some(class(|c| !c.is_ascii_alphanumeric())), Smiley),
            r(asian_smiley(), None, Smiley),
            r(lit("{"), None, Replace("-LCB-")),
            r(lit("}"), None, Replace("-RCB-")),
            r(lit("["), None, Replace("-LSB-")),
            r(lit("]"), None, Replace("-RSB-")),
            r(lit("("), None, Replace("-LRB-")),
            r(lit(")"), None, Replace("-RRB-")),
            r(plus(lit("-")), None, Hyphens),
            r(
                alt(vec![
                    rep(lit("."), 3, 5),
                    seq(vec![rep(seq(vec![lit("."), set(" \u{00A0}", &[])]), 2, 4), lit(".")]),
                    set("\u{0085}\u{2026}", &[]),
                ]),
                None,
                Ellipsis,
            ),
            r(alt(vec![plus(lit("@")), plus(lit("#")), plus(lit("_"))]), None, Text),
            r(alt(vec![plus(lit("*")), rep(lit("\\*"), 1, 3)]), None, Text),
            r(insentp.clone(), None, Text),
            r(plus(set("?!", &[])), None, Text),
            r(
                set(
                    ".\u{00A1}\u{00BF}\u{037E}\u{0589}\u{061F}\u{06D4}\u{07FA}\u{3002}",
                    &[('\u{0700}', '\u{0702}')],
                ),
                None,
                Text,
            ),
            r(lit("="), None, Text),
            r(lit("/"), None, Text),
            r(seq(vec![hthing(), lit(".")]), Some(insentp.clone()), NoSoftHyphens),
            r(hthing(), None, NoSoftHyphens),
            r(seq(vec![thing(), lit(".")]), Some(insentp.clone()), Text),
            r(thing(), None, Text),
            r(seq(vec![thinga(), lit(".")]), Some(insentp), Amp),
            r(thinga(), None, Amp),
            r(
                lit("'"),
                Some(seq(vec![ascii_letter(), not_set(" \t\n\r\u{00A0}", &[])])),
                QuoteLeft,
            ),
            r(redaux(), None, QuoteRight),
            r(sredaux(), None, QuoteRight),
            r(quotes(), None, QuoteRight),
            r(alt(vec![lit("<<"), lit(">>")]), None, Text),
            r(miscsymbol(), None, Text),
            r(
                alt(vec![lit("\0"), plus(space()), set("\u{200B}\u{200E}\u{200F}\u{FEFF}", &[])]),
                None,
                Skip,
            ),
            // pycocoevalcap turns '\n' into ' '; other line terminators are treated as spaces (see above).
            r(newline(), None, Skip),
            r(lit("&nbsp;"), None, Skip),
            r(any, None, Skip),
        ];
        Lexer { rules }
    }

    /// The shared lexer (building it compiles the rules once).
    pub fn get() -> &'static Lexer {
        static LEXER: OnceLock<Lexer> = OnceLock::new();
        LEXER.get_or_init(Lexer::new)
    }

    /// Tokens of `text[..limit]`, as the jar prints them before lowercasing. `text[limit..]` is what the
    /// jar sees next (a newline and the next caption, or nothing at the end of its input); trailing-context
    /// rules may look into it.
    pub fn tokens(&self, text: &[char], limit: usize, out: &mut Vec<String>) {
        let mut pos = 0;
        let mut ends = Vec::new();
        while pos < limit {
            if let Some(next) = fast_word(text, pos, out) {
                pos = next;
                continue;
            }
            let c = text[pos];
            // (total length, token length, rule index)
            let mut best: Option<(usize, usize, usize)> = None;
            for (i, rule) in self.rules.iter().enumerate() {
                if !rule.can_start(c) {
                    continue;
                }
                ends.clear();
                rule.main.ends(text, pos, &mut ends);
                if ends.is_empty() {
                    continue;
                }
                let (total, tok) = match &rule.trail {
                    None => {
                        let e = *ends.iter().max().unwrap();
                        (e, e)
                    }
                    Some(trail) => {
                        let mut found: Option<(usize, usize)> = None;
                        let mut t = Vec::new();
                        for &e in ends.iter() {
                            t.clear();
                            trail.ends(text, e, &mut t);
                            if let Some(&te) = t.iter().max() {
                                if found.is_none_or(|(ft, fe)| te > ft || (te == ft && e > fe)) {
                                    found = Some((te, e));
                                }
                            }
                        }
                        match found {
                            Some(f) => f,
                            None => continue,
                        }
                    }
                };
                if total > pos && best.is_none_or(|(bt, _, _)| total > bt) {
                    best = Some((total, tok, i));
                }
            }
            let (_, tok_end, rule) = best.expect("the catch-all rule matches any character");
            pos = self.apply(self.rules[rule].action, text, pos, tok_end, out);
        }
    }

    /// Emits the token(s) of a match of `text[start..end]` and returns where lexing resumes.
    fn apply(
        &self,
        action: Action,
        text: &[char],
        start: usize,
        end: usize,
        out: &mut Vec<String>,
    ) -> usize {
        use Action::*;
        let s: String = text[start..end].iter().collect();
        match action {
            Text => out.push(s),
            PushBack(n) => {
                out.push(text[start..end - n].iter().collect());
                return end - n;
            }
            KeepAndPushBackPeriod => {
                out.push(s);
                return end - 1;
            }
            AcronymSentenceEnd => {
                let mut e = end;
                while e > start && is_trailing_space(text[e - 1]) {
                    e -= 1;
                }
                if e - start == 2 {
                    // "I.", "Z.": the letter alone, the period lexed again.
                    out.push(text[start..e - 1].iter().collect());
                } else {
                    out.push(text[start..e].iter().collect());
                }
                return e - 1;
            }
            TrimTrailingSpace => {
                let mut e = end;
                while e > start && is_trailing_space(text[e - 1]) {
                    e -= 1;
                }
                out.push(text[start..e].iter().collect());
                return e;
            }
            NoSoftHyphens => out.push(remove_soft_hyphens(&s)),
            NbspSpaces => out.push(s.replace(' ', "\u{00A0}")),
            Dash => out.push("--".into()),
            Amp => out.push(normalize_amp(&s)),
            QuoteLeft => out.push(latex_quotes(&s, true)),
            QuoteRight => out.push(latex_quotes(&s, false)),
            Fraction => out.push(
                s.replace('\u{00BC}', "1/4")
                    .replace('\u{00BD}', "1/2")
                    .replace('\u{00BE}', "3/4")
                    .replace('\u{2153}', "1/3")
                    .replace('\u{2154}', "2/3"),
            ),
            Currency => out.push(
                s.replace('\u{00A2}', "cents")
                    .replace('\u{00A3}', "#")
                    .replace(['\u{0080}', '\u{00A4}', '\u{20A0}', '\u{20AC}'], "$"),
            ),
            Phone => {
                out.push(s.replace(' ', "\u{00A0}").replace('(', "-LRB-").replace(')', "-RRB-"))
            }
            Smiley => out.push(s.replace('(', "-LRB-").replace(')', "-RRB-")),
            Replace(t) => out.push(t.into()),
            Hyphens => out.push(if (3..=4).contains(&s.chars().count()) { "--".into() } else { s }),
            Ellipsis => out.push("...".into()),
            Skip => {}
        }
        end
    }
}

fn is_trailing_space(c: char) -> bool {
    c == ' ' || c == '\t' || ('\n'..='\r').contains(&c) || c == '\u{0085}'
}

fn remove_soft_hyphens(s: &str) -> String {
    if !s.contains('\u{00AD}') {
        return s.to_owned();
    }
    let out: String = s.chars().filter(|&c| c != '\u{00AD}').collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

fn normalize_amp(s: &str) -> String {
    // Java's `(?i:&amp;)` → "&".
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.to_ascii_lowercase().find("&amp;") {
        out.push_str(&rest[..i]);
        out.push('&');
        rest = &rest[i + 5..];
    }
    out.push_str(rest);
    out
}

fn latex_quotes(s: &str, probably_left: bool) -> String {
    let (single, double) = if probably_left { ("`", "``") } else { ("'", "''") };
    let s = s.replace("&apos;", single).replace('\'', single);
    let s = s.replace('"', double).replace("&quot;", double);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{0091}' | '\u{2018}' | '\u{201B}' | '\u{2039}' => out.push('`'),
            '\u{0092}' | '\u{2019}' | '\u{203A}' => out.push('\''),
            '\u{0093}' | '\u{201C}' | '\u{00AB}' => out.push_str("``"),
            '\u{0094}' | '\u{201D}' | '\u{00BB}' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out
}

/// Plain words, the bulk of every caption, without running the rule set: a run of ASCII letters followed
/// by a space or line end. No rule other than WORD-like ones can match such a run, and those all emit it
/// unchanged; the splitting rules (`cannot`, `gonna`, …) are excluded. `tests::fast_path_agrees` checks
/// this against the full rule set.
fn fast_word(text: &[char], pos: usize, out: &mut Vec<String>) -> Option<usize> {
    let mut end = pos;
    while end < text.len() && text[end].is_ascii_alphabetic() {
        end += 1;
    }
    if end == pos || !(end == text.len() || text[end] == ' ' || text[end] == '\n') {
        return None;
    }
    let w: String = text[pos..end].iter().collect();
    let lower = w.to_ascii_lowercase();
    if matches!(lower.as_str(), "cannot" | "gonna" | "gotta" | "lemme" | "gimme" | "wanna") {
        return None;
    }
    out.push(w);
    Some(end)
}

#[cfg(test)]
pub(crate) fn tokens_without_fast_path(text: &[char], limit: usize) -> Vec<String> {
    // Same loop as `tokens`, with the shortcut disabled.
    let lexer = Lexer::get();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < limit {
        let c = text[pos];
        let mut best: Option<(usize, usize, usize)> = None;
        for (i, rule) in lexer.rules.iter().enumerate() {
            if !rule.can_start(c) {
                continue;
            }
            let mut ends = Vec::new();
            rule.main.ends(text, pos, &mut ends);
            let cand = match &rule.trail {
                None => ends.iter().max().map(|&e| (e, e)),
                Some(trail) => {
                    let mut found: Option<(usize, usize)> = None;
                    for &e in &ends {
                        let mut t = Vec::new();
                        trail.ends(text, e, &mut t);
                        if let Some(&te) = t.iter().max() {
                            if found.is_none_or(|(ft, fe)| te > ft || (te == ft && e > fe)) {
                                found = Some((te, e));
                            }
                        }
                    }
                    found
                }
            };
            if let Some((total, tok)) = cand {
                if total > pos && best.is_none_or(|(bt, _, _)| total > bt) {
                    best = Some((total, tok, i));
                }
            }
        }
        let (_, tok_end, rule) = best.unwrap();
        pos = lexer.apply(lexer.rules[rule].action, text, pos, tok_end, &mut out);
    }
    out
}
